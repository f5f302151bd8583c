"""Fulfillment's typed state and pure decisions: documents read and written in their stored shape, inputs never
changed, and the short-lived guard of a cancel that overtook its order (issue 17)."""

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.common import Reason
from contracts.internal import AllocationRevoked
from contracts.public import OrderCancel, OrderStatus, ShipmentDispatched
from services.fulfillment import domain
from services.fulfillment.store import Link, Order, Timeline

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

# an order document as the dict-based fulfillment wrote it: the typed model reads and writes the same shape
STORED: dict[str, Any] = {
    "order_key": "web:W-1",
    "channel": "web",
    "channel_order_ref": "W-1",
    "order_number": "SO-1",
    "revision": 2,
    "ship_to": {
        "recipient": "R",
        "line1": "L1",
        "line2": None,
        "city": "Hangzhou",
        "region": None,
        "postal_code": "310000",
        "country": "CN",
    },
    "customer_id": "C-1",
    "currency": "CNY",
    "prices": {"A": "11.00"},
    "charges": [{"code": "packaging", "description": "export carton", "amount": "2.00"}],
    "complete": False,
    "more_to_come": True,
    "status": "partially_shipped",
    "shipments": {
        "SO-1-E-1": {
            "warehouse": "E",
            "lines": [{"line_no": 1, "sku": "A", "quantity": 2}],
            "state": "dispatched",
            "carrier": "SF",
            "tracking_number": "T1",
            "consumed": True,
        },
        "SO-1-W-2": {"warehouse": "W", "lines": [{"line_no": 1, "sku": "A", "quantity": 1}], "state": "opened"},
    },
    "supply": {
        "PR-1": {
            "kind": "purchase",
            "sku": "A",
            "quantity": 1,
            "needed_by": "2026-12-05",
            "revision": 2,
            "expected": "2026-12-09",
        }
    },
    "announced_promise": "2026-12-09",
}


def cmd(cid: str = "cmd-1", ref: str = "W-9") -> OrderCancel:
    return OrderCancel(
        type="order.cancel",
        version=1,
        command_id=cid,
        channel="web",
        channel_order_ref=ref,
        issued_by="cs-1",
        issued_at=NOW,
        reason="typo?",
    )


def received(ref: str = "W-9", at: datetime = NOW, name: str = "received") -> OrderStatus:
    return OrderStatus(
        event_id=f"rcv-{ref}-{name}",
        channel="web",
        channel_order_ref=ref,
        revision=1,
        order_number=f"SO-{ref}",
        status=name,  # type: ignore[arg-type]
        occurred_at=at,
        decided_by="intake/1",
    )


def as_status(out: Any) -> OrderStatus:
    return OrderStatus.model_validate(json.loads(out.value))


def test_an_order_document_reads_and_writes_its_stored_shape() -> None:
    order = Order.from_doc(copy.deepcopy(STORED))
    assert order.to_doc() == STORED
    assert order.shipments["SO-1-E-1"].consumed and order.supply["PR-1"].expected is not None
    assert Order.from_doc({"order_key": "web:W-2", "channel": "web", "channel_order_ref": "W-2"}).complete


def test_decisions_never_change_what_they_are_given() -> None:
    order = Order.from_doc(copy.deepcopy(STORED))
    before = copy.deepcopy(order.to_doc())
    revoked = AllocationRevoked(
        event_id="rv-1",
        order_key="web:W-1",
        order_number="SO-1",
        channel="web",
        channel_order_ref="W-1",
        revision=2,
        reason="priority",
    )
    dispatched = ShipmentDispatched(
        type="shipment.dispatched", version=1, shipment_id="SO-1-W-2", carrier="SF", tracking_number="T2"
    )
    packed = replace(
        order, shipments={**order.shipments, "SO-1-W-2": replace(order.shipments["SO-1-W-2"], state="packed")}
    )
    packed_before = copy.deepcopy(packed.to_doc())
    decisions = [
        domain.revoke(order, revoked),
        domain.cancel(order, None, cmd(ref="W-1"), NOW),
        domain.slip(order, "backordered", ["PR-1"], NOW.date() + timedelta(days=30), {}, "c", NOW),
        domain.track(packed, dispatched, "c", NOW),
    ]
    changed = [d.new_state for d in decisions if d.new_state is not None]
    assert len(changed) == 2 and changed[-1].shipments["SO-1-W-2"].state == "dispatched"
    assert packed.to_doc() == packed_before and packed.shipments["SO-1-W-2"].state == "packed"
    assert order.to_doc() == before


def test_a_cancel_for_an_unknown_order_is_refused_and_kept_for_the_guard_only() -> None:
    d = domain.cancel(None, None, cmd(), NOW)
    assert d.new_state is not None and not d.new_state.known
    guard = d.new_state.pending_cancel
    assert guard is not None and guard.until == NOW + domain.CANCEL_GUARD
    [answer] = [as_status(e) for e in d.events]
    assert answer.status == "invalid" and answer.details["refused"] == "order.cancel"
    assert answer.reasons[0].code == "unknown_order" and answer.reasons[0].message.startswith(
        "pending: no such order yet"
    )
    known = Timeline("web:W-9", "web", "W-9", "SO-W-9")  # an order known by its statuses is cancelled at once
    assert [
        as_status(e).status for e in domain.cancel(None, known, cmd(), NOW).events if e.topic == "orders.status"
    ] == ["cancelled"]


def test_the_orders_first_status_applies_a_pending_cancel_in_time() -> None:
    pending = domain.cancel(None, None, cmd(), NOW)
    answer = as_status(pending.events[0])
    kept, no_timeline = domain.on_status(pending.new_state, None, answer, NOW)  # its own answer comes back
    assert no_timeline.new_state is None and kept.new_state is not None
    assert kept.new_state.pending_cancel is not None and len(kept.new_state.pending_cancel.entries) == 1
    for_order, for_timeline = domain.on_status(kept.new_state, None, received(at=NOW + timedelta(minutes=4)), NOW)
    assert for_order.new_state is not None and for_order.new_state.status == "cancelled"
    assert for_order.new_state.pending_cancel is None and for_order.new_state.order_number == "SO-W-9"
    assert [e.topic for e in for_order.events] == ["orders.status", "orderflow.orders.cancelled"]
    assert for_timeline.new_state is not None
    assert [e.status for e in for_timeline.new_state.entries] == ["invalid", "received"]


def test_the_answer_to_a_pending_cancel_joins_the_timeline_even_after_the_order_became_known() -> None:
    # e2e, session 11: the order's ship-to (review) reached fulfillment before the copy of its own answer came
    # back on orders.status; the answer must still wait with the pending cancel for the order's first status
    pending = domain.cancel(None, None, cmd(), NOW)
    answer = as_status(pending.events[0])
    assert pending.new_state is not None
    known = replace(pending.new_state, customer_id="C-1")
    assert known.known and known.timeline is None
    kept, no_timeline = domain.on_status(known, None, answer, NOW)
    assert no_timeline.new_state is None and kept.new_state is not None
    assert kept.new_state.pending_cancel is not None and len(kept.new_state.pending_cancel.entries) == 1
    _, for_timeline = domain.on_status(kept.new_state, None, received(at=NOW + timedelta(minutes=1)), NOW)
    assert for_timeline.new_state is not None
    assert [e.status for e in for_timeline.new_state.entries] == ["invalid", "received"]


def test_a_pending_cancel_lapses_and_leaves_nothing_to_the_order() -> None:
    pending = domain.cancel(None, None, cmd(), NOW).new_state
    late = received(at=NOW + domain.CANCEL_GUARD + timedelta(seconds=1))
    for_order, for_timeline = domain.on_status(pending, None, late, NOW + timedelta(minutes=6))
    assert for_order.events == () and for_order.new_state is not None and for_order.new_state.pending_cancel is None
    assert for_timeline.new_state is not None and [e.status for e in for_timeline.new_state.entries] == ["received"]
    for name in ("invalid", "rejected"):  # nothing to cancel: the guard ends without a cancellation
        ended, _ = domain.on_status(pending, None, received(name=name), NOW)
        assert ended.events == () and ended.new_state is not None and ended.new_state.pending_cancel is None


def test_a_refusal_about_an_unknown_order_starts_no_timeline() -> None:
    why = [Reason(code="unknown_order", field="channel_order_ref", message="no order")]
    refusal = received().model_copy(update={"status": "invalid", "reasons": why, "details": {"refused": "x"}})
    for_order, for_timeline = domain.on_status(None, None, refusal, NOW)
    assert for_order.new_state is None and for_order.events == () and for_timeline.new_state is None


def test_the_reservation_claims_the_order_number_a_status_only_sets_it() -> None:
    stale = Link("web:OLD")
    assert domain.name_number(stale, "web:NEW", claim=False).new_state is None
    assert domain.name_number(stale, "web:NEW", claim=True).new_state == Link("web:NEW")
    assert domain.name_number(None, "web:NEW", claim=False).new_state == Link("web:NEW")
