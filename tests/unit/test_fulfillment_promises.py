"""Slipped promises (handbook 2.4.1) and cancellation after a delivery exception, as pure decisions."""

from datetime import UTC, date, datetime
from typing import Any

from contracts.internal import SupplyNeeded
from contracts.public import OrderCancel
from services.fulfillment import domain

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
NEEDED = date(2026, 12, 5)


def need(kind: str = "production", request: str = "PR-1", sku: str = "SIGN") -> SupplyNeeded:
    return SupplyNeeded(
        event_id=f"need-{request}",
        order_key="web:W-1",
        order_number="SO-1",
        channel="web",
        channel_order_ref="W-1",
        revision=1,
        kind=kind,  # type: ignore[arg-type]
        request_id=request,
        sku=sku,
        quantity=3,
        needed_by=NEEDED,
    )


def waiting(*needs: SupplyNeeded) -> dict[str, Any]:
    st: dict[str, Any] | None = None
    for n in needs:
        st = domain.remember_supply(st, n)
    assert st is not None
    return st


def test_an_on_time_answer_is_remembered_but_not_announced() -> None:
    r = domain.slip(waiting(need()), "in_production", ["PR-1"], NEEDED, {}, "c1", NOW)
    assert r.outputs == [] and r.state is not None and r.state["supply"]["PR-1"]["expected"] == "2026-12-05"


def test_a_late_answer_keeps_the_status_and_announces_the_new_date() -> None:
    r = domain.slip(waiting(need()), "in_production", ["PR-1"], date(2026, 12, 9), {"x": 1}, "c1", NOW)
    [out] = r.outputs
    body = out.value.decode()
    assert out.key == "web:W-1" and '"status":"in_production"' in body and '"promise_date":"2026-12-09"' in body
    assert '"code":"promise_slipped"' in body and '"order_number":"SO-1"' in body
    assert r.state is not None and r.state["announced_promise"] == "2026-12-09"
    again = domain.slip(r.state, "in_production", ["PR-1"], date(2026, 12, 9), {}, "c2", NOW)
    assert again.outputs == []


def test_the_promise_is_the_latest_of_the_expected_dates() -> None:
    st = waiting(need("purchase", "PO-REQ-1", "A"), need("purchase", "PO-REQ-2", "B"))
    first = domain.slip(st, "backordered", ["PO-REQ-1"], date(2026, 12, 12), {}, "c1", NOW)
    assert first.state is not None
    assert '"promise_date":"2026-12-12"' in first.outputs[0].value.decode()
    second = domain.slip(first.state, "backordered", ["PO-REQ-2"], date(2026, 12, 8), {}, "c2", NOW)
    assert second.outputs == [] and second.state is not None  # late too, but the promise is still the 12th
    third = domain.slip(second.state, "backordered", ["PO-REQ-1"], date(2026, 12, 7), {}, "c3", NOW)
    [out] = third.outputs  # A comes earlier now: B's 8th is the promise
    assert '"promise_date":"2026-12-08"' in out.value.decode()


def test_status_name_defaults_by_kind_without_a_known_status() -> None:
    r = domain.slip(waiting(need("purchase", "PO-REQ-1")), None, ["PO-REQ-1"], date(2026, 12, 9), {}, "c", NOW)
    assert '"status":"backordered"' in r.outputs[0].value.decode()


def test_nothing_slips_once_past_waiting() -> None:
    st = waiting(need())
    for last in ("reserved", "shipped", "cancelled"):
        assert domain.slip(st, last, ["PR-1"], date(2026, 12, 9), {}, "c", NOW).state is None
    assert (
        domain.slip({**st, "status": "open"}, "in_production", ["PR-1"], date(2026, 12, 9), {}, "c", NOW).state is None
    )
    assert domain.slip(st, "in_production", ["PR-OTHER"], date(2026, 12, 9), {}, "c", NOW).state is None


def cancel_cmd() -> OrderCancel:
    return OrderCancel(
        type="order.cancel",
        version=1,
        command_id="cmd-1",
        channel="web",
        channel_order_ref="W-1",
        issued_by="cs-1",
        issued_at=NOW,
        reason="customer gave up",
    )


def order(*states: str) -> dict[str, Any]:
    return {
        "order_key": "web:W-1",
        "order_number": "SO-1",
        "channel": "web",
        "channel_order_ref": "W-1",
        "revision": 1,
        "status": "shipped",
        "shipments": {f"S-{i}": {"warehouse": "E", "lines": [], "state": s} for i, s in enumerate(states)},
    }


def test_cancel_is_accepted_when_every_shipped_shipment_failed() -> None:
    r = domain.cancel(order("exception", "opened"), cancel_cmd(), "web:W-1", NOW)
    assert r.outcome == "cancelled after delivery exception of S-0"
    assert r.state is not None and {s["state"] for s in r.state["shipments"].values()} == {"voided"}
    assert [o.topic for o in r.outputs] == [
        "orders.status",
        "fulfillment.shipments",
        "fulfillment.shipments",
        "orderflow.orders.cancelled",
    ]


def test_cancel_is_refused_while_anything_is_on_its_way_or_delivered() -> None:
    for states in (("exception", "dispatched"), ("exception", "delivered"), ("dispatched",)):
        r = domain.cancel(order(*states), cancel_cmd(), "web:W-1", NOW)
        assert r.state is None and '"already_shipped"' in r.outputs[0].value.decode()
