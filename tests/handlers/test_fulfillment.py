"""Fulfillment's handlers on the in-memory broker: shipments, tracking, invoicing, cancellation, supply
instructions, out-of-order events, duplicates."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from faststream.kafka.annotations import KafkaMessage

from contracts import topics
from contracts.common import Reason
from contracts.internal import AllocationRevoked
from orderflow import track
from services.fulfillment import domain, store
from services.fulfillment.app import CONSUMES, NAME, build
from services.fulfillment.store import Order
from services.runtime import health
from services.runtime.messages import Incoming, Outgoing
from services.runtime.status import status
from tests.factories import NOW, command
from tests.handlers.events import number, okey, reserved, shipping, supply_needed, wire
from tests.handlers.harness import Harness

EAST, WEST = "WH-EAST", "WH-WEST"


@pytest.fixture
async def ful() -> AsyncIterator[Harness]:
    async with Harness(NAME, CONSUMES, build) as h:
        yield h


async def open_order(
    h: Harness, ref: str, allocations: dict[str, list[tuple[str, int, str]]] | None = None, complete: bool = True
) -> list[str]:
    """Ship-to, then the reservation; returns the opened shipment ids."""
    await h.send(topics.ORDERS_SHIPPING, wire(shipping(ref)), okey(ref))
    alloc = allocations or {EAST: [("SKU-0001", 10, "11.00")]}
    await h.send(topics.INVENTORY_ALLOCATIONS, wire(reserved(ref, alloc, complete=complete)), okey(ref))
    return [m["shipment_id"] for m in h.out[topics.FULFILLMENT_SHIPMENTS] if m["order_number"] == number(ref)]


async def event(h: Harness, what: str, ref: str, sid: str, **fields: Any) -> None:
    """A warehouse/carrier event on `fulfillment.events`, keyed by order number."""
    msg = {"type": f"shipment.{what}", "version": 1, "shipment_id": sid, "order_number": number(ref), **fields}
    await h.send(topics.FULFILLMENT_EVENTS, msg, number(ref))


async def dispatch(h: Harness, ref: str, sid: str, tracking: str = "SF100") -> None:
    await event(h, "dispatched", ref, sid, carrier="SF Express", tracking_number=tracking)


async def deliver(h: Harness, ref: str, sid: str) -> None:
    await event(h, "delivered", ref, sid, signed_by="Li Wei", delivered_at=NOW.isoformat())


async def ship(h: Harness, ref: str, sid: str, tracking: str = "SF100") -> None:
    await event(h, "picked", ref, sid)
    await event(h, "packed", ref, sid)
    await dispatch(h, ref, sid, tracking)


async def cancel(h: Harness, ref: str, cid: str) -> None:
    await h.send(topics.ORDERS_COMMANDS, command("order.cancel", ref, cid, reason="customer asked"), okey(ref))


async def state(h: Harness, ref: str) -> Order:
    key = store.ORDERS.key(okey(ref))
    stored = (await h.store.load_many([key]))[key].state
    assert stored is not None
    return Order.from_doc(stored)


# ---- shipments ----
async def test_reservation_opens_one_shipment_per_warehouse_with_the_address(ful: Harness) -> None:
    sids = await open_order(ful, "F-1", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    assert len(sids) == 2 and len(set(sids)) == 2
    east, west = ful.out[topics.FULFILLMENT_SHIPMENTS]
    assert (east["warehouse"], west["warehouse"]) == (EAST, WEST)
    assert [(l["sku"], l["quantity"]) for l in east["lines"]] == [("SKU-0001", 6)]
    assert east["ship_to"]["city"] == "Hangzhou" and east["packaging"] == "export_carton"
    assert east["_key"] == number("F-1") and east["channel_order_ref"] == "F-1"
    assert ful.statuses() == []


async def test_full_path_ships_delivers_and_invoices_once(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-2", {EAST: [("SKU-0001", 10, "11.00"), ("SKU-0002", 2, "12.00")]})
    await ship(ful, "F-2", sid)
    assert ful.statuses() == ["shipped"]
    shipped = ful.out[topics.ORDERS_STATUS][0]
    assert shipped["details"]["tracking_number"] == "SF100" and shipped["details"]["carrier"] == "SF Express"
    [consumed] = ful.out[topics.FULFILLMENT_DISPATCHED]
    assert consumed["type"] == "stock.shipped" and consumed["warehouse"] == EAST and consumed["shipment_id"] == sid
    assert [(l["sku"], l["quantity"]) for l in consumed["lines"]] == [("SKU-0001", 10), ("SKU-0002", 2)]
    await deliver(ful, "F-2", sid)
    assert ful.statuses() == ["shipped", "delivered"]
    [inv] = ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert inv["order_number"] == number("F-2") and inv["customer_id"] == "C-1001" and inv["_key"] == number("F-2")
    assert [(l["sku"], l["quantity"], l["amount"]) for l in inv["lines"]] == [
        ("SKU-0001", 10, "110.00"),
        ("SKU-0002", 2, "24.00"),
    ]
    assert inv["total_amount"] == "134.00"
    assert not ful.out[topics.ORDERS_DLQ]


async def test_split_order_is_partially_shipped_then_shipped_and_invoiced_once(ful: Harness) -> None:
    east, west = await open_order(ful, "F-3", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await ship(ful, "F-3", east, "SF1")
    await ship(ful, "F-3", west, "SF2")
    assert ful.statuses() == ["partially_shipped", "shipped"]
    assert len(ful.out[topics.FULFILLMENT_DISPATCHED]) == 2
    await deliver(ful, "F-3", east)
    assert not ful.out[topics.FINANCE_INVOICE_REQUESTS]
    await deliver(ful, "F-3", west)
    assert ful.statuses() == ["partially_shipped", "shipped", "delivered"]
    [inv] = ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert [(l["sku"], l["quantity"]) for l in inv["lines"]] == [("SKU-0001", 10)] and inv["total_amount"] == "110.00"


async def test_a_part_with_its_remainder_backordered_is_delivered_and_invoiced_once_the_rest_is(ful: Harness) -> None:
    await ful.send(topics.ORDERS_SHIPPING, wire(shipping("F-13")), okey("F-13"))
    part = reserved("F-13", {EAST: [("SKU-0001", 6, "11.00")]}, complete=False, more_to_come=True)
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(part), okey("F-13"))
    [first] = [m["shipment_id"] for m in ful.out[topics.FULFILLMENT_SHIPMENTS]]
    await ship(ful, "F-13", first, "SF1")
    await deliver(ful, "F-13", first)
    assert ful.statuses() == ["partially_shipped"]  # the order is not delivered while its rest is to come
    assert not ful.out[topics.FINANCE_INVOICE_REQUESTS]
    rest = reserved("F-13", {WEST: [("SKU-0001", 4, "11.00")]}, event_id="reserved-F-13-rest")
    for _ in range(2):  # a duplicate allocation opens nothing more
        await ful.send(topics.INVENTORY_ALLOCATIONS, wire(rest), okey("F-13"))
    [_, second] = [m["shipment_id"] for m in ful.out[topics.FULFILLMENT_SHIPMENTS]]
    assert second != first
    await ship(ful, "F-13", second, "SF2")
    await deliver(ful, "F-13", second)
    assert ful.statuses() == ["partially_shipped", "shipped", "delivered"]
    [inv] = ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert [(l["sku"], l["quantity"]) for l in inv["lines"]] == [("SKU-0001", 10)] and inv["total_amount"] == "110.00"


async def test_partial_reservation_is_delivered_and_invoiced(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-4", {EAST: [("SKU-0001", 6, "11.00")]}, complete=False)  # customer: ship part
    await ship(ful, "F-4", sid)
    await deliver(ful, "F-4", sid)
    assert ful.statuses() == ["partially_shipped", "delivered"]
    [inv] = ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert inv["total_amount"] == "66.00"


@pytest.mark.parametrize(
    ("steps", "late", "current"),
    [
        ((), "delivered", "opened"),
        (("picked",), "dispatched", "picked"),
        (("picked", "packed"), "delivered", "packed"),
        (("picked", "packed"), "exception", "packed"),
    ],
)
async def test_out_of_order_event_is_dead_lettered_and_not_applied(
    ful: Harness, steps: tuple[str, ...], late: str, current: str
) -> None:
    [sid] = await open_order(ful, "F-5")
    for step in steps:
        await event(ful, step, "F-5", sid)
    fields = {
        "delivered": {"signed_by": "Li Wei", "delivered_at": NOW.isoformat()},
        "dispatched": {"carrier": "SF Express", "tracking_number": "SF1"},
        "exception": {"kind": "lost"},
    }[late]
    before = await state(ful, "F-5")
    await event(ful, late, "F-5", sid, **fields)
    [letter] = ful.out[topics.ORDERS_DLQ]
    assert letter["reason"] == f"shipment.{late} refused: shipment {sid} is {current}"
    assert letter["service"] == "fulfillment" and letter["topic"] == topics.FULFILLMENT_EVENTS
    assert ful.statuses() == [] and not ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert await state(ful, "F-5") == before


async def test_event_for_an_unknown_order_is_dead_lettered(ful: Harness) -> None:
    await event(ful, "picked", "F-6", "nope")
    [letter] = ful.out[topics.ORDERS_DLQ]
    assert "unknown order number" in letter["reason"]


async def test_exception_then_redispatch_then_delivery(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-7")
    await ship(ful, "F-7", sid, "SF1")
    await event(ful, "exception", "F-7", sid, kind="lost", note="parcel lost at hub")
    assert ful.statuses() == ["shipped", "delivery_exception"]
    exc = ful.out[topics.ORDERS_STATUS][-1]
    assert [(r["code"], r["message"]) for r in exc["reasons"]] == [("delivery_lost", "parcel lost at hub")]
    await dispatch(ful, "F-7", sid, "SF2")  # re-shipped with a new tracking number
    assert ful.statuses() == ["shipped", "delivery_exception", "shipped"]
    assert ful.out[topics.ORDERS_STATUS][-1]["details"]["tracking_number"] == "SF2"
    assert len({s["event_id"] for s in ful.out[topics.ORDERS_STATUS]}) == 3
    assert len(ful.out[topics.FULFILLMENT_DISPATCHED]) == 1  # the stock left once
    before = await state(ful, "F-7")
    await event(ful, "exception", "F-7", sid, kind="lost", note="parcel lost at hub")  # a replay of both
    await dispatch(ful, "F-7", sid, "SF2")
    assert await state(ful, "F-7") == before and len(ful.out[topics.ORDERS_STATUS]) == 3
    await deliver(ful, "F-7", sid)
    assert ful.statuses()[-1] == "delivered" and len(ful.out[topics.FINANCE_INVOICE_REQUESTS]) == 1
    assert not ful.out[topics.ORDERS_DLQ]


def _handled_label_sets() -> set[tuple[str, ...]]:
    """The label sets of fulfillment's handled-messages counter (each one a child the process keeps for good)."""
    samples = health.HANDLED.collect()[0].samples
    return {(s.labels["type"], s.labels["outcome"]) for s in samples if s.labels["service"] == NAME}


async def test_shipment_events_add_no_metric_label_set_per_order(ful: Harness) -> None:
    """The soak's fulfillment RSS grew ~3.5 KB per order: each shipment event's outcome began with the shipment id,
    which became the `outcome` label: four new counter children per order, never freed."""

    async def life(ref: str) -> None:
        [sid] = await open_order(ful, ref)
        await ship(ful, ref, sid)
        await deliver(ful, ref, sid)

    await life("F-LBL-0")
    known = _handled_label_sets()
    for n in range(1, 6):
        await life(f"F-LBL-{n}")
    assert _handled_label_sets() == known
    assert ("shipment.picked", "picked") in known and len(ful.out[topics.FINANCE_INVOICE_REQUESTS]) == 6
    assert health.outcome_label("SO-20261203-000001-WH-EAST-1 picked") == "other"


# ---- cancellation ----
async def test_cancel_before_dispatch_voids_shipments_and_tells_every_service(ful: Harness) -> None:
    east, west = await open_order(ful, "F-8", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await event(ful, "picked", "F-8", east)
    await cancel(ful, "F-8", "cmd-8")
    assert ful.statuses() == ["cancelled"]
    assert ful.out[topics.ORDERS_STATUS][0]["decided_by"] == "supervisor-1"
    voided = [m for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided"]
    assert sorted(v["shipment_id"] for v in voided) == sorted([east, west])
    [ev] = ful.out[topics.ORDERS_CANCELLED]
    assert ev["order_key"] == okey("F-8") and ev["order_number"] == number("F-8") and ev["_key"] == okey("F-8")
    await event(ful, "packed", "F-8", east)  # the warehouse is too late: refused
    assert "voided" in ful.out[topics.ORDERS_DLQ][0]["reason"]
    assert not ful.out[topics.FULFILLMENT_DISPATCHED]


async def test_cancel_before_any_shipment_still_releases(ful: Harness) -> None:
    await publish_status(ful, upstream_status("F-9", "in_review", "rev-9"))
    ful.clear()
    await cancel(ful, "F-9", "cmd-9")  # while the order waits for a decision: nothing opened yet
    assert ful.statuses() == ["cancelled"]
    assert ful.out[topics.ORDERS_STATUS][0]["order_number"] == number("F-9")  # named as its statuses name it
    [ev] = ful.out[topics.ORDERS_CANCELLED]
    assert ev["order_key"] == okey("F-9")
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(reserved("F-9", {EAST: [("SKU-0001", 1, "11.00")]})), okey("F-9"))
    assert not ful.out[topics.FULFILLMENT_SHIPMENTS]  # a late reservation opens nothing


async def test_cancel_after_dispatch_is_refused(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-10")
    await ship(ful, "F-10", sid)
    await cancel(ful, "F-10", "cmd-10")
    refused = ful.out[topics.ORDERS_STATUS][-1]
    assert refused["status"] == "shipped" and [r["code"] for r in refused["reasons"]] == ["already_shipped"]
    assert refused["details"] == {"refused": "order.cancel"}
    assert not ful.out[topics.ORDERS_CANCELLED]
    assert not [m for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided"]
    await deliver(ful, "F-10", sid)
    assert ful.statuses()[-1] == "delivered"


# ---- inventory takes an allocation back (priority reallocation, amendment) ----
def revoked(ref: str, event_id: str = "revoked-1") -> AllocationRevoked:
    """`allocation.revoked` as inventory publishes it for an order whose stock went to a priority order."""
    return AllocationRevoked(
        event_id=event_id, order_key=okey(ref), order_number=number(ref), channel="web", channel_order_ref=ref,
        revision=1, reason="stock reallocated to priority order SO-T-P-1",
    )  # fmt: skip


def voided(h: Harness) -> list[dict[str, Any]]:
    return [m for m in h.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided"]


async def test_revoked_allocation_voids_the_unshipped_shipments_and_a_new_one_reopens(ful: Harness) -> None:
    east, west = await open_order(ful, "F-40", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await event(ful, "picked", "F-40", east)
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-40")), okey("F-40"))
    assert sorted(v["shipment_id"] for v in voided(ful)) == sorted([east, west])
    assert {v["reason"] for v in voided(ful)} == {"stock reallocated to priority order SO-T-P-1"}
    st = await state(ful, "F-40")
    assert {s.state for s in st.shipments.values()} == {"voided"} and st.status is None
    await event(ful, "packed", "F-40", east)  # no pick list is left for stock that is gone
    assert "voided" in ful.out[topics.ORDERS_DLQ][0]["reason"]
    again = reserved("F-40", {WEST: [("SKU-0001", 10, "11.00")]}).model_copy(update={"event_id": "reserved-F-40-2"})
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(again), okey("F-40"))
    [new] = [m for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.opened"][2:]
    assert new["shipment_id"] not in (east, west) and new["warehouse"] == WEST
    await ship(ful, "F-40", new["shipment_id"])
    await deliver(ful, "F-40", new["shipment_id"])
    assert ful.statuses() == ["shipped", "delivered"]
    [invoice] = ful.out[topics.FINANCE_INVOICE_REQUESTS]
    assert [(l["sku"], l["quantity"]) for l in invoice["lines"]] == [("SKU-0001", 10)]


async def test_revocation_keeps_a_shipment_already_dispatched(ful: Harness) -> None:
    east, west = await open_order(ful, "F-41", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await ship(ful, "F-41", east)
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-41")), okey("F-41"))
    assert [v["shipment_id"] for v in voided(ful)] == [west]
    st = await state(ful, "F-41")
    assert st.shipments[east].state == "dispatched" and st.status == "partially_shipped"


async def test_revocation_of_a_cancelled_or_unknown_order_changes_nothing(ful: Harness) -> None:
    await open_order(ful, "F-42")
    await cancel(ful, "F-42", "cmd-42")
    before = await state(ful, "F-42")
    ful.clear()
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-42")), okey("F-42"))
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-43")), okey("F-43"))
    assert dict(ful.out) == {} and (await state(ful, "F-42")) == before


# ---- supply instructions ----
@pytest.mark.parametrize(("kind", "out_type", "id_field"), [
    ("production", "production.requested", "production_request_id"),
    ("purchase", "purchase.requested", "purchase_request_id"),
])  # fmt: skip
async def test_supply_need_becomes_an_instruction(ful: Harness, kind: str, out_type: str, id_field: str) -> None:
    need = supply_needed("F-11", kind)
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(need), okey("F-11"))
    [msg] = ful.out[topics.SUPPLY_INSTRUCTIONS]
    assert msg["type"] == out_type and msg[id_field] == need.request_id and msg["_key"] == "SIGN-CUSTOM"
    assert (msg["order_number"], msg["sku"], msg["quantity"]) == (number("F-11"), "SIGN-CUSTOM", 4)
    assert msg["needed_by"] == need.needed_by.isoformat()


# ---- duplicate delivery: the same message twice, effects and outputs once ----
async def test_duplicate_shipping_is_stored_once(ful: Harness) -> None:
    for _ in range(2):
        await ful.send(topics.ORDERS_SHIPPING, wire(shipping("F-20")), okey("F-20"))
    assert dict(ful.out) == {}
    ship_to = (await state(ful, "F-20")).ship_to
    assert ship_to is not None and ship_to.city == "Hangzhou"
    await ful.send(
        topics.INVENTORY_ALLOCATIONS, wire(reserved("F-20", {EAST: [("SKU-0001", 1, "11.00")]})), okey("F-20")
    )
    assert len(ful.out[topics.FULFILLMENT_SHIPMENTS]) == 1


async def test_duplicate_reservation_opens_shipments_once(ful: Harness) -> None:
    await open_order(ful, "F-21", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    alloc = reserved("F-21", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(alloc), okey("F-21"))
    assert len(ful.out[topics.FULFILLMENT_SHIPMENTS]) == 2
    assert len((await state(ful, "F-21")).shipments) == 2


async def test_duplicate_supply_need_is_instructed_once(ful: Harness) -> None:
    for _ in range(2):
        await ful.send(topics.INVENTORY_ALLOCATIONS, wire(supply_needed("F-22", "production")), okey("F-22"))
    assert len(ful.out[topics.SUPPLY_INSTRUCTIONS]) == 1


@pytest.mark.parametrize("kind", ["picked", "packed", "dispatched", "exception", "delivered"])
async def test_duplicate_shipment_event_is_applied_once(ful: Harness, kind: str) -> None:
    [sid] = await open_order(ful, "F-23")
    path = ["picked", "packed", "dispatched", kind if kind in ("exception", "delivered") else ""]
    fields: dict[str, dict[str, Any]] = {
        "dispatched": {"carrier": "SF Express", "tracking_number": "SF1"},
        "delivered": {"signed_by": "Li Wei", "delivered_at": NOW.isoformat()},
        "exception": {"kind": "damaged"},
    }
    for step in path[: path.index(kind) + 1]:
        await event(ful, step, "F-23", sid, **fields.get(step, {}))
    before = await state(ful, "F-23")
    outputs = {t: len(v) for t, v in ful.out.items()}
    await event(ful, kind, "F-23", sid, **fields.get(kind, {}))
    assert {t: len(v) for t, v in ful.out.items()} == outputs  # no new status, stock.shipped, invoice or DLQ
    assert (await state(ful, "F-23")) == before


async def test_duplicate_revocation_voids_once(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-44")
    for _ in range(2):
        await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-44")), okey("F-44"))
    assert [v["shipment_id"] for v in voided(ful)] == [sid]
    again = reserved("F-44", {EAST: [("SKU-0001", 10, "11.00")]}).model_copy(update={"event_id": "reserved-F-44-2"})
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(again), okey("F-44"))
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(revoked("F-44")), okey("F-44"))  # redelivered late
    assert len(voided(ful)) == 1  # the new shipment stays open
    st = await state(ful, "F-44")
    assert sorted(s.state for s in st.shipments.values()) == ["opened", "voided"]


async def test_duplicate_cancel_is_applied_once(ful: Harness) -> None:
    await open_order(ful, "F-24")
    for _ in range(2):
        await cancel(ful, "F-24", "cmd-24")
    assert ful.statuses() == ["cancelled"]
    assert len([m for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided"]) == 1
    assert len(ful.out[topics.ORDERS_CANCELLED]) == 1


async def test_duplicate_refused_cancel_is_answered_once(ful: Harness) -> None:
    [sid] = await open_order(ful, "F-25")
    await ship(ful, "F-25", sid)
    for _ in range(2):
        await cancel(ful, "F-25", "cmd-25")
    assert ful.statuses() == ["shipped", "shipped"]  # the dispatch, then one refusal
    assert not ful.out[topics.ORDERS_CANCELLED]


# ---- fulfillment consumes orders.status itself (the order timeline) ----
@pytest.fixture(autouse=True)
async def _own_statuses_captured(ful: Harness) -> None:
    """Fulfillment consumes `orders.status` (the timeline), and the harness captures only topics the service does
    not consume: add a sink so the statuses fulfillment publishes are still captured."""
    for s in ful.broker.subscribers:
        if not getattr(s, "group_id", None) and any(t.name == topics.ORDERS_STATUS for t in getattr(s, "topics", ())):
            return  # the harness captures it already
    sub = ful.broker.subscriber(topics.ORDERS_STATUS, batch=True)

    @sub
    async def sink(body: Any, msg: KafkaMessage) -> None:
        raw = msg.raw_message
        for r in raw if isinstance(raw, list | tuple) else [raw]:
            value = json.loads(r.value)
            value["_key"] = r.key.decode() if isinstance(r.key, bytes) else r.key
            ful.out[topics.ORDERS_STATUS].append(value)

    await sub.start()


def upstream_status(ref: str, name: str, cause: str, **kw: Any) -> Outgoing:
    """An `order.status` as another service publishes it (intake, review, inventory)."""
    kw.setdefault("order_number", number(ref))
    kw.setdefault("decided_by", "review-rules/1")
    return status(cause, "web", ref, name, NOW, revision=1, **kw)


async def publish_status(h: Harness, out: Outgoing) -> None:
    await h.send(out.topic, out.value, out.key)


async def timeline_of(h: Harness, ref: str) -> dict[str, Any]:
    tl = await store.find_timeline(h.store, ref)
    assert tl is not None, f"no timeline for {ref}"
    return tl


async def test_timeline_records_every_status_of_every_service_once(ful: Harness) -> None:
    for out in (
        upstream_status("T-1", "received", "acc-1", decided_by="intake/1"),
        upstream_status("T-1", "approved", "app-1", details={"charges": [], "total_amount": "110.00"}),
        upstream_status("T-1", "reserved", "res-1", decided_by="inventory-allocation/1",
                        details={"allocations": [{"warehouse": EAST, "lines": [{"line_no": 1, "sku": "SKU-0001",
                                                                                  "quantity": 10}]}],
                                 "complete": True}),
    ):  # fmt: skip
        await publish_status(ful, out)
    [sid] = await open_order(ful, "T-1")
    await ship(ful, "T-1", sid, "SF9")
    await deliver(ful, "T-1", sid)
    await publish_status(ful, upstream_status("T-1", "approved", "app-1"))  # a republished status: same event id
    tl = await timeline_of(ful, okey("T-1"))
    assert [e["status"] for e in tl["entries"]] == ["received", "approved", "reserved", "shipped", "delivered"]
    assert [e["decided_by"] for e in tl["entries"]] == [
        "intake/1",
        "review-rules/1",
        "inventory-allocation/1",
        "fulfillment/1",
        "fulfillment/1",
    ]
    assert tl["order_number"] == number("T-1") and tl["order_key"] == okey("T-1")
    by_number = await timeline_of(ful, number("T-1"))
    assert by_number == tl
    details = [e["details"] for e in tl["entries"]]
    assert details[1] == "total amount: 110.00"
    assert details[2] == "allocations: WH-EAST: SKU-0001×10; complete"
    assert "tracking number: SF9" in details[3] and "carrier: SF Express" in details[3]
    text = track.render(tl)
    assert "delivered" in text and "inventory-allocation/1" in text and number("T-1") in text


async def test_timeline_keeps_refusals_and_holds_with_their_reasons(ful: Harness) -> None:
    [sid] = await open_order(ful, "T-2")
    await ship(ful, "T-2", sid)
    await cancel(ful, "T-2", "cmd-T2")
    tl = await timeline_of(ful, okey("T-2"))
    first, refused = tl["entries"]
    assert first["status"] == "shipped" and first["details"].startswith("shipment id: ")
    assert refused["status"] == "shipped" and refused["decided_by"] == "supervisor-1"
    assert [r["code"] for r in refused["reasons"]] == ["already_shipped"]
    assert refused["details"] == "refused: order.cancel"


async def test_timeline_never_stores_contact_data(ful: Harness) -> None:
    reasons = [
        Reason(code="invalid_format", field="customer.email", message="The contact email (customer.email) "
               "'li.wei@@example' is not valid: expected an address such as name@example.com."),
        Reason(code="invalid_format", field="customer.phone", message="The contact phone (customer.phone) "
               "'+86 abc 1234' is not valid."),
        Reason(code="missing", field="ship_to.city", message="The city (ship_to.city) is missing."),
    ]  # fmt: skip
    held = status("sub-3", "web", "T-3", "needs_clarification", NOW, revision=1, reasons=reasons, decided_by="intake/1")
    await publish_status(ful, held)
    shipped = upstream_status(
        "T-3", "shipped", "x-3",
        details={"ship_to": {"recipient": "Li Wei", "line1": "88 Wensan Rd"}, "contact": "liwei@example.com",
                 "note": "call liwei@example.com"},
    )  # fmt: skip
    await publish_status(ful, shipped)
    raw = json.dumps(ful.memory.rows[store.ORDERS.key(okey("T-3"))]["state"]["timeline"])
    for secret in ("li.wei@@example", "+86 abc", "Li Wei", "Wensan", "liwei@example.com"):
        assert secret not in raw, secret
    tl = await timeline_of(ful, okey("T-3"))
    assert [r["field"] for r in tl["entries"][0]["reasons"]] == ["customer.email", "customer.phone", "ship_to.city"]
    assert tl["entries"][0]["order_number"] is None


def life_statuses(ref: str) -> list[Outgoing]:
    """The statuses intake, review and inventory publish for `ref` before fulfillment ships it."""
    return [
        upstream_status(ref, "received", f"rcv-{ref}", decided_by="intake/1"),
        upstream_status(ref, "approved", f"app-{ref}"),
        upstream_status(ref, "reserved", f"res-{ref}", decided_by="inventory-allocation/1"),
    ]


async def test_the_timeline_is_kept_in_the_order_document_in_publish_order(ful: Harness) -> None:
    for out in life_statuses("W-1"):
        await publish_status(ful, out)
    [sid] = await open_order(ful, "W-1")
    await ship(ful, "W-1", sid)
    await deliver(ful, "W-1", sid)
    assert set(ful.memory.find()) == {store.ORDERS.key(okey("W-1")), store.ALIASES.key(number("W-1"))}
    tl = await timeline_of(ful, number("W-1"))
    published = [m["event_id"] for m in ful.out[topics.ORDERS_STATUS]]  # as the topic has them
    assert [e["status"] for e in tl["entries"]] == ["received", "approved", "reserved", "shipped", "delivered"]
    assert [e["event_id"] for e in tl["entries"]] == published
    assert list(tl) == ["order_key", "channel", "channel_order_ref", "order_number", "entries", "dropped"]
    assert (await state(ful, "W-1")).timeline == store.Timeline.from_doc(tl)


async def test_a_status_fulfillment_published_writes_nothing_when_it_comes_back(ful: Harness) -> None:
    for out in life_statuses("W-2"):
        await publish_status(ful, out)
    [sid] = await open_order(ful, "W-2")
    opened = ful.memory.rows[store.ORDERS.key(okey("W-2"))]["v"]
    await ship(ful, "W-2", sid)  # the harness hands `shipped` back to fulfillment, as the topic would
    row = ful.memory.rows[store.ORDERS.key(okey("W-2"))]
    version, timeline = row["v"], row["state"]["timeline"]
    assert version == opened + 3  # picked, packed, dispatched: none for `shipped` coming back
    assert [e["status"] for e in timeline["entries"]][-1] == "shipped"  # recorded with the dispatch
    [shipped] = [m for m in ful.out[topics.ORDERS_STATUS] if m["status"] == "shipped"]
    del shipped["_key"]
    await ful.send(topics.ORDERS_STATUS, shipped, okey("W-2"))  # its copy again (a redelivery)
    row = ful.memory.rows[store.ORDERS.key(okey("W-2"))]
    assert row["v"] == version and row["state"]["timeline"] == timeline


async def statuses_of(h: Harness, ref: str) -> list[str]:
    return [e["status"] for e in (await timeline_of(h, okey(ref)))["entries"]]


async def test_a_status_published_before_fulfillments_own_is_listed_before_it(ful: Harness) -> None:
    received, approved, reserved_status = life_statuses("W-4")
    for offset, out in enumerate((received, approved, reserved_status), start=10):
        await ful.processor.process([Incoming(topics.ORDERS_STATUS, 0, offset, okey("W-4"), out.value)])
    [sid] = await open_order(ful, "W-4")
    await event(ful, "picked", "W-4", sid)
    await event(ful, "packed", "W-4", sid)
    ful.clear()
    await dispatch(ful, "W-4", sid, "SF4")  # `shipped` is recorded with the dispatch
    [shipped] = [m for m in ful.out[topics.ORDERS_STATUS] if m["status"] == "shipped"]
    del shipped["_key"]
    # another service's status, published (offset 20) before fulfillment's `shipped` (offset 21) but consumed
    # after fulfillment recorded `shipped` (the in-memory broker hands a copy back at once, at offset 0)
    other = upstream_status("W-4", "partially_shipped", "other-1", decided_by="someone/1")
    await ful.processor.process([Incoming(topics.ORDERS_STATUS, 0, 20, okey("W-4"), other.value)])
    assert await statuses_of(ful, "W-4") == ["received", "approved", "reserved", "shipped", "partially_shipped"]
    copy = json.dumps(shipped).encode()
    await ful.processor.process([Incoming(topics.ORDERS_STATUS, 0, 21, okey("W-4"), copy)])
    assert await statuses_of(ful, "W-4") == ["received", "approved", "reserved", "partially_shipped", "shipped"]
    tl = await timeline_of(ful, okey("W-4"))
    assert all("at" not in e for e in tl["entries"])


async def test_a_status_and_the_reservation_in_one_batch_are_one_write(ful: Harness) -> None:
    received, approved, reserved_status = life_statuses("W-3")
    for out in (received, approved):
        await publish_status(ful, out)
    before = ful.memory.rows[store.ORDERS.key(okey("W-3"))]["v"]
    alloc = wire(reserved("W-3", {EAST: [("SKU-0001", 10, "11.00")]}))
    await ful.processor.process(
        [
            Incoming(topics.INVENTORY_ALLOCATIONS, 0, 0, okey("W-3"), alloc),
            Incoming(topics.ORDERS_STATUS, 0, 100, okey("W-3"), reserved_status.value),
        ]
    )
    after = ful.memory.rows[store.ORDERS.key(okey("W-3"))]
    assert after["v"] == before + 1
    assert after["state"]["status"] == "open" and after["state"]["timeline"]["entries"][-1]["status"] == "reserved"


async def test_a_timeline_document_of_an_older_version_is_still_found(ful: Harness) -> None:
    old = {
        "order_key": okey("OLD-9"),
        "channel": "web",
        "channel_order_ref": "OLD-9",
        "order_number": number("OLD-9"),
        "entries": [],
        "dropped": 0,
    }
    ful.memory.rows["timeline:" + okey("OLD-9")] = {"_id": "x", "v": 1, "state": old, "inbox": [], "pending": []}
    link = {"order_key": okey("OLD-9")}
    ful.memory.rows[store.ALIASES.key(number("OLD-9"))] = {
        "_id": "y",
        "v": 1,
        "state": link,
        "inbox": [],
        "pending": [],
    }
    assert await store.find_timeline(ful.store, number("OLD-9")) == old
    assert await store.find_timeline(ful.store, okey("OLD-9")) == old


async def test_unknown_order_has_no_timeline(ful: Harness) -> None:
    assert await store.find_timeline(ful.store, "web:NOPE") is None
    assert await store.find_timeline(ful.store, "SO-NOPE") is None


# ---- promise slips (2.4.1): production's and purchasing's answers ----
def production_update(
    request_id: str, expected: date, status_: str = "planned", event_id: str | None = None
) -> dict[str, Any]:
    return {
        "type": "production.updated", "version": 1, "event_id": event_id, "production_request_id": request_id,
        "sku": "SIGN-CUSTOM", "quantity": 4, "expected_completion": expected.isoformat(), "status": status_,
    }  # fmt: skip


def po_update(
    sku: str, eta: date, po: str = "PO-1", status_: str = "open", event_id: str | None = None
) -> dict[str, Any]:
    return {
        "type": "purchase-order.updated", "version": 1, "event_id": event_id, "po_number": po, "sku": sku,
        "warehouse": EAST, "quantity": 50, "eta": eta.isoformat(), "status": status_,
    }  # fmt: skip


def slips(h: Harness) -> list[dict[str, Any]]:
    return [m for m in h.out[topics.ORDERS_STATUS] if any(r["code"] == "promise_slipped" for r in m.get("reasons", []))]


async def test_late_production_slips_the_promise_once_per_new_date(ful: Harness) -> None:
    need = supply_needed("P-1", "production")
    await publish_status(ful, upstream_status("P-1", "in_production", "need-P1", promise_date=need.needed_by))
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(need), okey("P-1"))
    await ful.send(topics.INVENTORY_MOVEMENTS, production_update(need.request_id, need.needed_by), "SIGN-CUSTOM")
    assert slips(ful) == []  # on time
    late = need.needed_by + timedelta(days=4)
    for _ in range(2):  # the same answer twice (a redelivery), then the same date again in a new message
        await ful.send(topics.INVENTORY_MOVEMENTS, production_update(need.request_id, late, event_id="m-1"), "x")
    await ful.send(topics.INVENTORY_MOVEMENTS, production_update(need.request_id, late, event_id="m-2"), "x")
    [slip] = slips(ful)
    assert slip["status"] == "in_production" and slip["promise_date"] == late.isoformat()
    assert slip["_key"] == okey("P-1") and slip["order_number"] == number("P-1")
    assert slip["decided_by"] == "fulfillment/1"
    assert slip["details"]["production_request_id"] == need.request_id
    assert slip["details"]["requested_date"] == need.needed_by.isoformat()
    later = late + timedelta(days=3)
    await ful.send(topics.INVENTORY_MOVEMENTS, production_update(need.request_id, later, event_id="m-3"), "x")
    assert [s["promise_date"] for s in slips(ful)] == [late.isoformat(), later.isoformat()]
    tl = await timeline_of(ful, okey("P-1"))
    assert [e["status"] for e in tl["entries"]] == ["in_production", "in_production", "in_production"]
    assert tl["entries"][-1]["reasons"][0]["code"] == "promise_slipped"


async def test_production_answers_for_other_requests_or_done_are_ignored(ful: Harness) -> None:
    need = supply_needed("P-2", "production")
    await ful.send(topics.INVENTORY_ALLOCATIONS, wire(need), okey("P-2"))
    late = need.needed_by + timedelta(days=4)
    await ful.send(topics.INVENTORY_MOVEMENTS, production_update("PR-SOMEONE-ELSE", late), "x")
    await ful.send(topics.INVENTORY_MOVEMENTS, production_update(need.request_id, late, "done"), "x")
    assert slips(ful) == [] and not ful.out[topics.ORDERS_DLQ]


async def test_late_purchase_slips_the_backordered_orders_waiting_on_that_sku(ful: Harness) -> None:
    for ref in ("B-1", "B-2"):
        await publish_status(ful, upstream_status(ref, "backordered", f"wait-{ref}"))
        await ful.send(topics.INVENTORY_ALLOCATIONS, wire(supply_needed(ref, "purchase", sku="LAMP-RARE")), okey(ref))
    need = supply_needed("B-1", "purchase", sku="LAMP-RARE")
    late = need.needed_by + timedelta(days=2)
    await ful.send(topics.INVENTORY_MOVEMENTS, po_update("SKU-0001", late), "SKU-0001")  # nobody waits on it
    await ful.send(topics.INVENTORY_MOVEMENTS, po_update("LAMP-RARE", need.needed_by), "LAMP-RARE")  # in time
    assert slips(ful) == []
    await ful.send(topics.INVENTORY_MOVEMENTS, po_update("LAMP-RARE", late, event_id="po-late"), "LAMP-RARE")
    got = sorted((s["_key"], s["status"], s["promise_date"], s["details"]["po_number"]) for s in slips(ful))
    assert got == [(okey(r), "backordered", late.isoformat(), "PO-1") for r in ("B-1", "B-2")]
    assert len({s["event_id"] for s in slips(ful)}) == 2


async def test_reserved_or_cancelled_orders_no_longer_slip(ful: Harness) -> None:
    for ref in ("B-3", "B-4", "B-5"):
        await ful.send(topics.INVENTORY_ALLOCATIONS, wire(supply_needed(ref, "purchase", sku="LAMP-RARE")), okey(ref))
    await open_order(ful, "B-3", {EAST: [("LAMP-RARE", 4, "50.00")]})  # the goods arrived: reserved
    await cancel(ful, "B-4", "cmd-B4")
    await publish_status(ful, upstream_status("B-5", "reserved", "res-B5"))  # reserved, shipments not yet opened
    late = supply_needed("B-3", "purchase").needed_by + timedelta(days=2)
    await ful.send(topics.INVENTORY_MOVEMENTS, po_update("LAMP-RARE", late), "LAMP-RARE")
    assert slips(ful) == []
    waiting = (await ful.store.load_many([store.PURCHASES.key("LAMP-RARE")]))[store.PURCHASES.key("LAMP-RARE")]
    assert waiting.state is not None and sorted(waiting.state["orders"]) == [okey("B-5")]


# ---- cancellation after a delivery exception (2.4.3: the exception reopens the order) ----
async def test_cancel_after_a_delivery_exception_voids_and_cancels(ful: Harness) -> None:
    [sid] = await open_order(ful, "X-1")
    await ship(ful, "X-1", sid)
    await event(ful, "exception", "X-1", sid, kind="damaged", note="crushed")
    await cancel(ful, "X-1", "cmd-X1")
    assert ful.statuses() == ["shipped", "delivery_exception", "cancelled"]
    assert ful.out[topics.ORDERS_STATUS][-1]["details"] == {"voided_after_exception": [sid]}
    [voided] = [m for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided"]
    assert voided["shipment_id"] == sid
    [ev] = ful.out[topics.ORDERS_CANCELLED]
    assert ev["order_key"] == okey("X-1")
    assert len(ful.out[topics.FULFILLMENT_DISPATCHED]) == 1  # consumed once at dispatch; nothing more
    await dispatch(ful, "X-1", sid, "SF-R")  # the re-shipment is too late: refused
    assert "voided" in ful.out[topics.ORDERS_DLQ][-1]["reason"]
    assert ful.statuses()[-1] == "cancelled" and not ful.out[topics.FINANCE_INVOICE_REQUESTS]


async def test_cancel_is_refused_while_another_shipment_is_on_its_way(ful: Harness) -> None:
    east, west = await open_order(ful, "X-2", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await ship(ful, "X-2", east, "SF1")
    await ship(ful, "X-2", west, "SF2")
    await event(ful, "exception", "X-2", east, kind="lost")
    await cancel(ful, "X-2", "cmd-X2")
    refused = ful.out[topics.ORDERS_STATUS][-1]
    assert [r["code"] for r in refused["reasons"]] == ["already_shipped"] and west in refused["reasons"][0]["message"]
    assert not ful.out[topics.ORDERS_CANCELLED]


async def test_cancel_after_exception_also_voids_the_unshipped_rest(ful: Harness) -> None:
    east, west = await open_order(ful, "X-3", {EAST: [("SKU-0001", 6, "11.00")], WEST: [("SKU-0001", 4, "11.00")]})
    await ship(ful, "X-3", east)
    await event(ful, "exception", "X-3", east, kind="refused")
    await cancel(ful, "X-3", "cmd-X3")
    assert ful.statuses()[-1] == "cancelled"
    voided = sorted(m["shipment_id"] for m in ful.out[topics.FULFILLMENT_SHIPMENTS] if m["type"] == "shipment.voided")
    assert voided == sorted([east, west])


async def test_the_reservation_owns_the_order_number_alias(ful: Harness) -> None:
    # a stale status (e.g. replayed history) claimed the number first; shipments must follow the reservation
    stale = status("old-1", "web", "OLD-1", "received", NOW, revision=1, order_number=number("N-1"))
    await publish_status(ful, stale)
    assert (await timeline_of(ful, number("N-1")))["order_key"] == okey("OLD-1")
    [sid] = await open_order(ful, "N-1")
    await ship(ful, "N-1", sid)
    assert ful.statuses()[-1] == "shipped" and not ful.out[topics.ORDERS_DLQ]
    assert (await timeline_of(ful, number("N-1")))["order_key"] == okey("N-1")


async def test_a_step_published_after_the_cancellation_is_followed_by_cancelled_again(ful: Harness) -> None:
    await publish_status(ful, upstream_status("F-LATE", "received", "rcv-late", decided_by="intake/1"))
    await cancel(ful, "F-LATE", "cmd-late")
    ful.clear()
    late = upstream_status("F-LATE", "reserved", "late-1", order_number=number("F-LATE"))
    for _ in range(2):  # a duplicate delivery restates nothing twice
        await publish_status(ful, late)
    restated = [s for s in ful.out[topics.ORDERS_STATUS] if s["status"] == "cancelled"]
    assert len({s["event_id"] for s in restated}) == 1 and restated[0]["details"] == {"restated_after": "reserved"}
    ful.clear()
    await publish_status(ful, upstream_status("F-LATE", "cancelled", "inv-cancel"))  # a cancellation: nothing
    refused = upstream_status("F-LATE", "approved", "late-2", details={"refused": "order.review-decision"})
    await publish_status(ful, refused)  # a refusal restates an older view: nothing
    assert [s["event_id"] for s in ful.out[topics.ORDERS_STATUS]] == [
        json.loads(m.value)["event_id"] for m in (upstream_status("F-LATE", "cancelled", "inv-cancel"), refused)
    ]


async def test_statuses_of_an_order_not_cancelled_restate_nothing(ful: Harness) -> None:
    await open_order(ful, "F-LIVE")
    ful.clear()
    await publish_status(ful, upstream_status("F-LIVE", "reserved", "live-1"))
    assert [s["status"] for s in ful.out[topics.ORDERS_STATUS]] == ["reserved"]  # only the one sent


# ---- a cancel for an order nothing is known of (issue 17) ----
def pending_answers(h: Harness) -> list[dict[str, Any]]:
    return [m for m in h.out[topics.ORDERS_STATUS] if any(r["code"] == "unknown_order" for r in m["reasons"])]


async def test_a_cancel_for_an_unknown_order_is_refused_and_leaves_no_order(ful: Harness) -> None:
    for _ in range(2):  # a redelivery is answered once
        await cancel(ful, "NOPE", "cmd-nope")
    [answer] = ful.out[topics.ORDERS_STATUS]
    assert answer["status"] == "invalid" and answer["details"]["refused"] == "order.cancel"
    assert answer["decided_by"] == "supervisor-1" and answer["order_number"] is None
    [reason] = answer["reasons"]
    assert reason["code"] == "unknown_order" and reason["message"].startswith("pending: no such order yet")
    assert datetime.fromisoformat(answer["details"]["pending_until"]) - datetime.now(UTC) <= domain.CANCEL_GUARD
    assert not ful.out[topics.ORDERS_CANCELLED] and not ful.out[topics.FULFILLMENT_SHIPMENTS]
    assert await store.find_timeline(ful.store, okey("NOPE")) is None  # `orderflow track web:NOPE`: unknown
    assert ful.statuses() == ["invalid"]


async def test_a_cancel_that_overtook_its_order_is_applied_when_the_order_arrives(ful: Harness) -> None:
    await cancel(ful, "EARLY", "cmd-early")
    received = upstream_status("EARLY", "received", "rcv-early", decided_by="intake/1")
    await publish_status(ful, received)
    # the in-memory broker may hand `cancelled` (published while fulfillment handles `received`) to the sink
    # before `received` itself: the topic order is invalid, received, cancelled
    answer, cancelled = [
        m for m in ful.out[topics.ORDERS_STATUS] if m["event_id"] != json.loads(received.value)["event_id"]
    ]
    assert (answer["status"], cancelled["status"]) == ("invalid", "cancelled")
    assert sorted(ful.statuses()) == ["cancelled", "invalid", "received"]
    assert cancelled["decided_by"] == "supervisor-1" and cancelled["order_number"] == number("EARLY")
    [ev] = ful.out[topics.ORDERS_CANCELLED]
    assert ev["order_key"] == okey("EARLY") and ev["order_number"] == number("EARLY")
    tl = await timeline_of(ful, number("EARLY"))  # the answer joins the order's timeline, in topic order
    assert [e["status"] for e in tl["entries"]] == ["invalid", "received", "cancelled"]
    topic_order = [answer["event_id"], json.loads(received.value)["event_id"], cancelled["event_id"]]
    assert [e["event_id"] for e in tl["entries"]] == topic_order
    await ful.send(
        topics.INVENTORY_ALLOCATIONS, wire(reserved("EARLY", {EAST: [("SKU-0001", 1, "11.00")]})), okey("EARLY")
    )
    assert not ful.out[topics.FULFILLMENT_SHIPMENTS]  # a late reservation opens nothing
    assert (await state(ful, "EARLY")).pending_cancel is None


async def test_a_cancel_lapses_when_its_order_comes_after_the_guard(ful: Harness) -> None:
    await cancel(ful, "LATER", "cmd-later")
    late = datetime.now(UTC) + domain.CANCEL_GUARD + timedelta(minutes=1)
    arrived = status("rcv-later", "web", "LATER", "received", late, revision=1, order_number=number("LATER"))
    await publish_status(ful, arrived)
    [sid] = await open_order(ful, "LATER")
    assert ful.statuses() == ["invalid", "received"] and not ful.out[topics.ORDERS_CANCELLED]
    tl = await timeline_of(ful, okey("LATER"))
    assert [e["status"] for e in tl["entries"]] == ["received"]  # the refusal is not inherited
    assert (await state(ful, "LATER")).pending_cancel is None
    await ship(ful, "LATER", sid)
    assert ful.statuses()[-1] == "shipped"


async def test_another_services_refusal_for_an_unknown_order_starts_no_timeline(ful: Harness) -> None:
    why = [Reason(code="unknown_order", field="channel_order_ref", message="no order web:GHOST is known")]
    refusal = status("cmd-g", "web", "GHOST", "invalid", NOW, reasons=why, details={"refused": "order.review-decision"})
    await publish_status(ful, refusal)
    assert await store.find_timeline(ful.store, okey("GHOST")) is None
    assert ful.memory.find() == {}  # nothing recorded at all
