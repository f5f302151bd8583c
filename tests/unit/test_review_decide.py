"""Review's pure decisions on typed state: new state and events returned, inputs never changed, stored form stable."""

import copy

import pytest

from contracts.public import CustomerUpserted, ProductUpserted, ReviewDecision
from services.review import domain, store
from services.review.domain import OrderCredit
from services.review.rules import DEFAULT_POLICY
from services.review.store import Credit, ReviewOrder
from services.runtime.steps import Decision
from tests.factories import NOW, command, customer, product
from tests.handlers.events import Line, accepted, cancelled, number, okey

REGULAR = CustomerUpserted.model_validate(customer("C-1001"))
SMALL = CustomerUpserted.model_validate(customer("C-2001", credit_limit="1000.00", outstanding_balance="0.00"))
PRODUCTS = {s: ProductUpserted.model_validate(product(s)) for s in ("SKU-0001", "SKU-0002")}
OTHERS = Credit(5000, {"SO-OTHER": 5000})
NEAR_LIMIT: list[Line] = [("SKU-0001", 95, "11.00")]  # 1045.00 of SMALL's 1000.00: queued for a person


def _new(d: Decision[OrderCredit]) -> OrderCredit:
    assert d.new_state is not None
    return d.new_state


def _order(d: Decision[OrderCredit]) -> ReviewOrder:
    order = _new(d).order
    assert order is not None
    return order


def _review(current: OrderCredit, revision: int = 1, **kw: object) -> Decision[OrderCredit]:
    small = kw.pop("small", False)
    order = accepted("D-1", revision=revision, customer="C-2001" if small else "C-1001", **kw)  # type: ignore[arg-type]
    return domain.review(current, order, SMALL if small else REGULAR, PRODUCTS, NOW, DEFAULT_POLICY)


def _decision(ref: str, decision: str = "approve", **kw: object) -> ReviewDecision:
    return ReviewDecision.model_validate(command("order.review-decision", ref, "cmd-1", decision=decision, **kw))


def test_approval_claims_the_total_and_leaves_its_inputs_alone() -> None:
    current = OrderCredit(None, OTHERS)
    before = copy.deepcopy(current)
    d = _review(current)
    assert current == before and current.credit is OTHERS
    assert _order(d).status == "approved"
    assert _new(d).credit == Credit(5000 + 11000, {"SO-OTHER": 5000, number("D-1"): 11000})
    assert [e.topic for e in d.events] == ["orders.status", "orderflow.orders.approved"]


def test_an_amendment_gives_back_the_old_claim_before_claiming_the_new_one() -> None:
    first = _new(_review(OrderCredit(None, OTHERS)))
    before = copy.deepcopy(first)
    d = _review(first, revision=2, lines=[("SKU-0001", 20, "11.00")], confirmation="FAX-7")
    assert first == before
    assert _new(d).credit == Credit(5000 + 22000, {"SO-OTHER": 5000, number("D-1"): 22000})
    assert [a.revision for a in _order(d).audit] == [1, 2]


def test_a_queued_order_claims_nothing_until_a_reviewer_approves_it() -> None:
    queued = _review(OrderCredit(None, Credit()), small=True, lines=NEAR_LIMIT)
    assert _order(queued).queued is not None and _new(queued).credit == Credit()
    before = copy.deepcopy(_new(queued))
    approved = domain.decide_manual(_new(queued), _decision("D-1"), NOW)
    assert _new(queued) == before
    assert _order(approved).status == "approved" and _order(approved).queued is None
    assert _order(approved).exposure_cents == 104500
    assert _new(approved).credit == Credit(104500, {number("D-1"): 104500})


def test_a_decision_for_an_order_review_does_not_know_is_refused_as_unknown() -> None:
    current = OrderCredit(None)
    d = domain.decide_manual(current, _decision("NOPE"), NOW)
    assert d.new_state is current and d.outcome == "refused: unknown order"
    [answer] = d.events
    assert answer.key == okey("NOPE")
    body = answer.value.decode()
    assert '"unknown_order"' in body and '"refused":"order.review-decision"' in body and '"invalid"' in body


def test_a_decision_for_an_order_not_queued_is_refused_and_changes_nothing() -> None:
    current = _new(_review(OrderCredit(None, OTHERS)))
    d = domain.decide_manual(current, _decision("D-1", decision="reject"), NOW)
    assert d.new_state is current and d.outcome == "refused: not in queue"
    assert '"not_in_review_queue"' in d.events[0].value.decode()


def test_cancellation_releases_the_claim_and_leaves_the_queue() -> None:
    current = _new(_review(OrderCredit(None, OTHERS)))
    d = domain.on_cancelled(current, cancelled("D-1"))
    assert _order(d).status == "cancelled" and _new(d).credit == OTHERS and current.credit != OTHERS
    first = domain.on_cancelled(OrderCredit(None), cancelled("D-2"))
    assert first.new_state == OrderCredit(ReviewOrder(1, "cancelled"), None)


@pytest.mark.parametrize("case", ["approved", "queued", "decided"])
def test_stored_form_round_trips(case: str) -> None:
    if case == "approved":
        state = _order(_review(OrderCredit(None, OTHERS)))
    else:
        queued = _review(OrderCredit(None, Credit()), small=True, lines=NEAR_LIMIT)
        state = _order(queued)
        if case == "decided":
            reject = _decision("D-1", decision="reject", reasons=["owes too much"])
            state = _order(domain.decide_manual(_new(queued), reject, NOW))
    doc = store.order_to_doc(state)
    assert store.order_from_doc(doc) == state
    assert store.order_to_doc(store.order_from_doc(copy.deepcopy(doc))) == doc
    assert isinstance(doc["audit"][-1]["at"], str)  # JSON types only
