"""Review's pure decisions on typed state: new state and events returned, inputs never changed, stored form stable."""

import copy
from decimal import Decimal

import pytest

from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import domain, store
from services.review.rules import DEFAULT_POLICY
from services.review.store import ReviewOrder
from services.runtime.steps import Decision
from tests.factories import NOW, command, customer, product
from tests.handlers.events import Line, accepted, cancelled, number, okey

REGULAR = CustomerUpserted.model_validate(customer("C-1001"))
SMALL = CustomerUpserted.model_validate(customer("C-2001", credit_limit="1000.00", outstanding_balance="0.00"))
PRODUCTS = {s: ProductUpserted.model_validate(product(s)) for s in ("SKU-0001", "SKU-0002")}
OTHERS = 5000  # cents the customer's other open orders claim
NEAR_LIMIT: list[Line] = [("SKU-0001", 95, "11.00")]  # 1045.00 of SMALL's 1000.00: queued for a person


def _order(d: Decision[ReviewOrder]) -> ReviewOrder:
    assert d.new_state is not None
    return d.new_state


def _review(state: ReviewOrder | None, revision: int = 1, others: int = OTHERS, **kw: object) -> Decision[ReviewOrder]:
    small = kw.pop("small", False)
    order = accepted("D-1", revision=revision, customer="C-2001" if small else "C-1001", **kw)  # type: ignore[arg-type]
    return domain.review(state, order, SMALL if small else REGULAR, PRODUCTS, others, NOW, DEFAULT_POLICY)


def _decision(ref: str, decision: str = "approve", **kw: object) -> ReviewDecision:
    return ReviewDecision.model_validate(command("order.review-decision", ref, "cmd-1", decision=decision, **kw))


def test_approval_claims_the_total_and_leaves_its_inputs_alone() -> None:
    d = _review(None)
    assert _order(d).status == "approved" and _order(d).claim == 11000
    assert [e.topic for e in d.events] == ["orders.status", "orderflow.orders.approved"]


def test_the_other_orders_exposure_counts_against_the_limit() -> None:
    assert _order(_review(None, small=True, lines=[("SKU-0001", 60, "11.00")], others=0)).status == "approved"
    over = _review(None, small=True, lines=[("SKU-0001", 60, "11.00")], others=60000)  # 600 + 660 > 1000 + 10%
    assert _order(over).status == "rejected" and _order(over).claim == 0


def test_an_amendment_replaces_the_old_claim() -> None:
    first = _order(_review(None))
    before = copy.deepcopy(first)
    d = _review(first, revision=2, lines=[("SKU-0001", 20, "11.00")], confirmation="FAX-7")
    assert first == before and first.claim == 11000
    assert _order(d).claim == 22000
    assert [a.revision for a in _order(d).audit] == [1, 2]
    rejected = _review(first, revision=2, lines=[("SKU-0001", 10, "10.50")])  # a major change, unconfirmed
    assert _order(rejected).status == "rejected" and _order(rejected).claim == 0


def test_a_cancelled_order_or_an_old_revision_keeps_what_it_holds() -> None:
    approved = _order(_review(None))
    again = _review(approved)
    assert again.new_state is approved and again.outcome == "ignored: revision already reviewed"
    cancelled_state = ReviewOrder(1, "cancelled")
    assert _review(cancelled_state).new_state is cancelled_state


def test_a_queued_order_claims_nothing_until_a_reviewer_approves_it() -> None:
    queued = _order(_review(None, small=True, lines=NEAR_LIMIT, others=0))
    assert queued.queued is not None and queued.claim == 0
    before = copy.deepcopy(queued)
    approved = domain.decide_manual(queued, _decision("D-1"), NOW)
    assert queued == before
    assert _order(approved).status == "approved" and _order(approved).queued is None
    assert _order(approved).claim == 104500


def test_a_decision_for_an_order_review_does_not_know_is_refused_as_unknown() -> None:
    d = domain.decide_manual(None, _decision("NOPE"), NOW)
    assert d.new_state is None and d.outcome == "refused: unknown order"
    [answer] = d.events
    assert answer.key == okey("NOPE")
    body = answer.value.decode()
    assert '"unknown_order"' in body and '"refused":"order.review-decision"' in body and '"invalid"' in body


def test_a_decision_for_an_order_not_queued_is_refused_and_changes_nothing() -> None:
    d = domain.decide_manual(_order(_review(None)), _decision("D-1", decision="reject"), NOW)
    assert d.new_state is None and d.outcome == "refused: not in queue"
    assert '"not_in_review_queue"' in d.events[0].value.decode()


def test_cancellation_and_invoicing_release_the_claim() -> None:
    current = _order(_review(None))
    d = domain.on_cancelled(current, cancelled("D-1"))
    assert _order(d).status == "cancelled" and _order(d).claim == 0 and current.claim == 11000
    assert domain.on_cancelled(None, cancelled("D-2")).new_state == ReviewOrder(1, "cancelled")
    invoice = InvoiceRequested(
        event_id="inv-1",
        order_number=number("D-1"),
        customer_id="C-1001",
        currency="CNY",
        lines=[],
        total_amount=Decimal("110.00"),
        delivered_at=NOW,
    )
    invoiced = domain.on_invoiced(current, invoice)
    assert _order(invoiced).claim == 0 and _order(invoiced).status == "approved"
    assert invoiced.outcome == f"invoiced {number('D-1')}: released 11000 cents"


@pytest.mark.parametrize("case", ["approved", "queued", "decided"])
def test_stored_form_round_trips(case: str) -> None:
    if case == "approved":
        state = _order(_review(None))
    else:
        state = _order(_review(None, small=True, lines=NEAR_LIMIT, others=0))
        if case == "decided":
            reject = _decision("D-1", decision="reject", reasons=["owes too much"])
            state = _order(domain.decide_manual(state, reject, NOW))
    doc = store.order_to_doc(state)
    assert store.order_from_doc(doc) == state
    assert store.order_to_doc(store.order_from_doc(copy.deepcopy(doc))) == doc
    assert isinstance(doc["audit"][-1]["at"], str)  # JSON types only
