"""Intake's pure decision on typed state: new state and events returned, inputs never changed, stored form stable."""

import copy

from contracts.public import OrderSubmitted
from services.intake import domain, store
from tests.factories import NOW, submitted

NUMBER = "SO-20261203-000001"


def _sub(ref: str = "WEB-D1", **over: object) -> domain.Submission:
    return domain.submission(OrderSubmitted.model_validate(submitted(ref, **over)))


def test_a_complete_first_revision_is_numbered_and_announced() -> None:
    msg = _sub()
    assert domain.needs_number(None, msg)
    d = domain.decide(None, msg, NOW, NUMBER)
    assert d.new_state is not None and (d.new_state.status, d.new_state.order_number) == ("received", NUMBER)
    assert d.new_state.order is not None and d.new_state.order.channel_order_ref == "WEB-D1"
    assert [e.topic for e in d.events] == ["orders.status", "orderflow.orders.accepted", "orderflow.orders.shipping"]


def test_an_unclear_revision_is_held_keeping_the_number_and_the_accepted_order() -> None:
    accepted = domain.decide(None, _sub(), NOW, NUMBER).new_state
    assert accepted is not None
    before = copy.deepcopy(accepted)
    broken = _sub(revision=2, total_amount="1.00")
    assert not domain.needs_number(accepted, broken)
    d = domain.decide(accepted, broken, NOW, None)
    assert accepted == before
    assert d.new_state is not None and d.new_state.status == "needs_clarification" and d.new_state.revision == 2
    assert d.new_state.order_number == NUMBER and d.new_state.order == accepted.order


def test_an_older_revision_changes_nothing() -> None:
    state = domain.decide(None, _sub(revision=3), NOW, NUMBER).new_state
    d = domain.decide(state, _sub(revision=2), NOW, None)
    assert d.new_state is None and d.outcome == "stale revision" and len(d.events) == 1
    assert domain.decide(state, _sub(revision=3), NOW, None).outcome == "duplicate revision"


def test_stored_form_round_trips_and_keeps_the_old_shape() -> None:
    state = domain.decide(None, _sub(), NOW, NUMBER).new_state
    assert state is not None
    doc = store.to_doc(state)
    assert set(doc) == {"revision", "status", "order_number", "accepted_at", "order"}
    assert store.from_doc(copy.deepcopy(doc)) == state
    held = domain.decide(None, _sub("WEB-D2", total_amount="1.00"), NOW, None).new_state
    assert held is not None and store.to_doc(held) == {
        "revision": 1,
        "status": "needs_clarification",
        "order_number": None,
    }
