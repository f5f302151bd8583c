"""Slipped promises (handbook 2.4.1) and cancellation after a delivery exception, as pure decisions."""

from dataclasses import replace
from datetime import UTC, date, datetime

from contracts.internal import SupplyNeeded
from contracts.public import OrderCancel
from services.fulfillment import domain
from services.fulfillment.store import Line, Order, Shipment, ShipmentState

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


def waiting(*needs: SupplyNeeded) -> Order:
    st: Order | None = None
    for n in needs:
        st = domain.remember_supply(st, n)
    assert st is not None
    return st


def test_an_on_time_answer_is_remembered_but_not_announced() -> None:
    r = domain.slip(waiting(need()), "in_production", ["PR-1"], NEEDED, {}, "c1", NOW)
    assert r.events == () and r.new_state is not None and r.new_state.supply["PR-1"].expected == NEEDED


def test_a_late_answer_keeps_the_status_and_announces_the_new_date() -> None:
    r = domain.slip(waiting(need()), "in_production", ["PR-1"], date(2026, 12, 9), {"x": "1"}, "c1", NOW)
    [out] = r.events
    body = out.value.decode()
    assert out.key == "web:W-1" and '"status":"in_production"' in body and '"promise_date":"2026-12-09"' in body
    assert '"code":"promise_slipped"' in body and '"order_number":"SO-1"' in body
    assert r.new_state is not None and r.new_state.announced_promise == date(2026, 12, 9)
    again = domain.slip(r.new_state, "in_production", ["PR-1"], date(2026, 12, 9), {}, "c2", NOW)
    assert again.events == ()


def test_the_promise_is_the_latest_of_the_expected_dates() -> None:
    st = waiting(need("purchase", "PO-REQ-1", "A"), need("purchase", "PO-REQ-2", "B"))
    first = domain.slip(st, "backordered", ["PO-REQ-1"], date(2026, 12, 12), {}, "c1", NOW)
    assert first.new_state is not None
    assert '"promise_date":"2026-12-12"' in first.events[0].value.decode()
    second = domain.slip(first.new_state, "backordered", ["PO-REQ-2"], date(2026, 12, 8), {}, "c2", NOW)
    assert second.events == () and second.new_state is not None  # late too, but the promise is still the 12th
    third = domain.slip(second.new_state, "backordered", ["PO-REQ-1"], date(2026, 12, 7), {}, "c3", NOW)
    [out] = third.events  # A comes earlier now: B's 8th is the promise
    assert '"promise_date":"2026-12-08"' in out.value.decode()


def test_status_name_defaults_by_kind_without_a_known_status() -> None:
    r = domain.slip(waiting(need("purchase", "PO-REQ-1")), None, ["PO-REQ-1"], date(2026, 12, 9), {}, "c", NOW)
    assert '"status":"backordered"' in r.events[0].value.decode()


def test_nothing_slips_once_past_waiting() -> None:
    st = waiting(need())
    for last in ("reserved", "shipped", "cancelled"):
        assert domain.slip(st, last, ["PR-1"], date(2026, 12, 9), {}, "c", NOW).new_state is None
    opened = replace(st, status="open")
    assert domain.slip(opened, "in_production", ["PR-1"], date(2026, 12, 9), {}, "c", NOW).new_state is None
    assert domain.slip(st, "in_production", ["PR-OTHER"], date(2026, 12, 9), {}, "c", NOW).new_state is None


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


def order(*states: ShipmentState) -> Order:
    lines = (Line(1, "A", 2),)
    shipments = {f"S-{i}": Shipment("E", lines, s) for i, s in enumerate(states)}
    return Order("web:W-1", "web", "W-1", "SO-1", 1, status="shipped", shipments=shipments)


def test_cancel_is_accepted_when_every_shipped_shipment_failed() -> None:
    r = domain.cancel(order("exception", "opened"), None, cancel_cmd(), NOW)
    assert r.outcome == "cancelled after delivery exception of S-0"
    assert r.new_state is not None and {s.state for s in r.new_state.shipments.values()} == {"voided"}
    assert [o.topic for o in r.events] == [
        "orders.status",
        "fulfillment.shipments",
        "fulfillment.shipments",
        "orderflow.orders.cancelled",
    ]


def test_cancel_is_refused_while_anything_is_on_its_way_or_delivered() -> None:
    for states in (("exception", "dispatched"), ("exception", "delivered"), ("dispatched",)):
        r = domain.cancel(order(*states), None, cancel_cmd(), NOW)
        assert r.new_state is None and '"already_shipped"' in r.events[0].value.decode()
