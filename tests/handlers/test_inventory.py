"""Inventory's handlers on the in-memory broker: reserve, split, backorder, produce, shortage decisions,
release, consume, duplicates; `reserved <= on_hand` per warehouse is checked after every message."""

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import topics
from contracts.internal import StockShipped
from contracts.public import ShipmentLine
from services.inventory import store
from services.inventory.app import CONSUMES, NAME, build_for
from services.inventory.config import InventorySettings
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Incoming
from tests.factories import NOW, command
from tests.handlers.events import REQUESTED, approved, cancelled, number, okey, wire
from tests.handlers.harness import Harness

EAST, WEST = InventorySettings().warehouse_preference
Levels = dict[tuple[str, str], tuple[int, int]]  # (sku, warehouse) -> (on hand, reserved)


@pytest.fixture
async def inv() -> AsyncIterator[Harness]:
    async with Harness(NAME, CONSUMES, build_for(InventorySettings())) as h:
        yield h


@pytest.fixture
async def inv_open_loop() -> AsyncIterator[Harness]:
    """Inventory without its own subscription to `order.cancelled`, so what it publishes there is captured.
    (The test broker would hand inventory its own cancellation back inside the publishing batch, before
    that batch clears its outbox; a real broker delivers it after the commit.)"""
    consumes = tuple(t for t in CONSUMES if t != topics.ORDERS_CANCELLED)
    async with Harness(NAME, consumes, build_for(InventorySettings())) as h:
        yield h


async def levels(h: Harness) -> Levels:
    """Stock per SKU and warehouse, asserting the invariant 0 <= reserved <= on hand."""
    rows = await store.stock_levels(h.store)
    bad = [r for r in rows if not 0 <= r["reserved"] <= r["on_hand"]]
    assert not bad, f"reserved above on hand: {bad}"
    return {(r["sku"], r["warehouse"]): (r["on_hand"], r["reserved"]) for r in rows}


async def put(h: Harness, topic: str, message: BaseModel | dict[str, Any], key: str) -> Levels:
    """Deliver one message, then check the invariant; returns the stock levels after it."""
    await h.send(topic, wire(message) if isinstance(message, BaseModel) else message, key)
    return await levels(h)


def movement(kind: str, event_id: str, **fields: Any) -> dict[str, Any]:
    """An `inventory.movements` message with an explicit event_id (the test broker gives every record offset 0)."""
    return {"type": kind, "version": 1, "event_id": event_id, **fields}


async def count(h: Harness, sku: str, wh: str, on_hand: int) -> Levels:
    return await put(
        h,
        topics.INVENTORY_MOVEMENTS,
        movement("stock.counted", f"count-{sku}-{wh}-{on_hand}", sku=sku, warehouse=wh, on_hand=on_hand),
        sku,
    )


async def receive(h: Harness, sku: str, wh: str, qty: int, eid: str, po: str | None = None) -> Levels:
    msg = movement("stock.received", eid, sku=sku, warehouse=wh, quantity=qty, po_number=po)
    return await put(h, topics.INVENTORY_MOVEMENTS, msg, sku)


def po_update(po: str, qty: int, eta_days: int, status: str = "open", sku: str = "SKU-0001") -> dict[str, Any]:
    eta = (NOW.date() + timedelta(days=eta_days)).isoformat()
    return movement(
        "purchase-order.updated",
        f"{po}-{status}-{qty}-{eta}",
        po_number=po,
        sku=sku,
        warehouse=EAST,
        quantity=qty,
        eta=eta,
        status=status,
    )


async def approve(h: Harness, ref: str, lines: list[tuple[str, int, str]] | None = None, **kw: Any) -> Levels:
    return await put(h, topics.ORDERS_APPROVED, approved(ref, lines, **kw), okey(ref))


async def shortage(h: Harness, ref: str, cid: str, choice: str, **kw: Any) -> Levels:
    cmd = command("order.shortage-decision", ref, cid, choice=choice, **kw)
    return await put(h, topics.ORDERS_COMMANDS, cmd, okey(ref))


def allocations(h: Harness, i: int = -1) -> dict[str, list[tuple[int, str, int]]]:
    ev = reserved_events(h)[i]
    return {a["warehouse"]: [(l["line_no"], l["sku"], l["quantity"]) for l in a["lines"]] for a in ev["allocations"]}


def reserved_events(h: Harness) -> list[dict[str, Any]]:
    return [e for e in h.out[topics.INVENTORY_ALLOCATIONS] if e["type"] == "allocation.reserved"]


def revocations(h: Harness) -> list[dict[str, Any]]:
    return [e for e in h.out[topics.INVENTORY_ALLOCATIONS] if e["type"] == "allocation.revoked"]


# ---- allocation ----
async def test_one_warehouse_serves_the_whole_line(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 5)
    await count(inv, "SKU-0001", WEST, 20)
    after = await approve(inv, "I-1")
    [st] = inv.out[topics.ORDERS_STATUS]
    assert st["status"] == "reserved" and st["order_number"] == number("I-1")
    assert allocations(inv) == {WEST: [(1, "SKU-0001", 10)]}
    ev = inv.out[topics.INVENTORY_ALLOCATIONS][0]
    assert ev["complete"] and ev["prices"] == {"SKU-0001": "11.00"} and ev["packaging"] == "export_carton"
    assert after == {("SKU-0001", EAST): (5, 0), ("SKU-0001", WEST): (20, 10)}


async def test_preferred_warehouse_first(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 50)
    await count(inv, "SKU-0001", WEST, 50)
    await approve(inv, "I-2")
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 10)]}


async def test_line_is_split_when_no_warehouse_has_it_all(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await count(inv, "SKU-0001", WEST, 6)
    await count(inv, "SKU-0002", EAST, 2)
    after = await approve(inv, "I-3", [("SKU-0001", 10, "11.00"), ("SKU-0002", 2, "12.00")])
    assert inv.statuses() == ["reserved"]
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 6), (2, "SKU-0002", 2)], WEST: [(1, "SKU-0001", 4)]}
    assert after[("SKU-0001", EAST)] == (6, 6) and after[("SKU-0001", WEST)] == (6, 4)


async def test_last_unit_goes_to_one_order_only(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "I-5")
    await approve(inv, "I-6")
    assert inv.statuses() == ["reserved", "awaiting_customer_decision"]
    assert (await levels(inv))[("SKU-0001", EAST)] == (10, 10)


# ---- backorders ----
async def test_shortage_with_purchase_order_in_time_is_backordered_then_reserved_on_receipt(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 4)
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-1", 20, 5), "SKU-0001")
    after = await approve(inv, "I-7")
    [st] = inv.out[topics.ORDERS_STATUS]
    assert st["status"] == "backordered" and st["promise_date"] == (NOW.date() + timedelta(days=5)).isoformat()
    assert not reserved_events(inv)
    assert after[("SKU-0001", EAST)] == (4, 4)  # what is there is held already
    after = await receive(inv, "SKU-0001", EAST, 20, "rcv-1", po="PO-1")
    assert inv.statuses() == ["backordered", "reserved"]
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 10)]}
    assert after[("SKU-0001", EAST)] == (24, 10)


async def test_received_goods_fill_the_oldest_promise_first(inv: Harness) -> None:
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-2", 30, 3), "SKU-0001")
    await approve(inv, "I-8")
    await approve(inv, "I-9")
    assert inv.statuses() == ["backordered", "backordered"]
    await receive(inv, "SKU-0001", EAST, 10, "rcv-2", po="PO-2")
    [first] = reserved_events(inv)
    assert first["order_number"] == number("I-8")
    await receive(inv, "SKU-0001", EAST, 10, "rcv-3", po="PO-2")
    assert [e["order_number"] for e in reserved_events(inv)] == [number("I-8"), number("I-9")]
    assert (await levels(inv))[("SKU-0001", EAST)] == (20, 20)


async def test_purchase_order_arriving_too_late_is_offered_as_wait(inv: Harness) -> None:
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-3", 30, 20), "SKU-0001")  # after the requested date
    await approve(inv, "I-10")
    [st] = inv.out[topics.ORDERS_STATUS]
    assert st["status"] == "awaiting_customer_decision"
    assert st["details"]["options"]["wait"] == {"promise_date": (NOW.date() + timedelta(days=20)).isoformat()}


# ---- make to order ----
async def test_make_to_order_goes_to_production_then_is_reserved(inv: Harness) -> None:
    await approve(inv, "I-11", [("SIGN-CUSTOM", 4, "120.00")], make_to_order=True, lead_days=3)
    [st] = inv.out[topics.ORDERS_STATUS]
    assert st["status"] == "in_production" and st["promise_date"] == (NOW.date() + timedelta(days=3)).isoformat()
    [need] = inv.out[topics.INVENTORY_ALLOCATIONS]
    assert need["type"] == "supply.needed" and need["kind"] == "production" and need["quantity"] == 4
    assert need["sku"] == "SIGN-CUSTOM" and need["_key"] == okey("I-11")
    done = movement(
        "production.updated",
        "prod-1",
        production_request_id=need["request_id"],
        sku="SIGN-CUSTOM",
        quantity=4,
        expected_completion=NOW.date().isoformat(),
        status="done",
    )
    after = await put(inv, topics.INVENTORY_MOVEMENTS, done, "SIGN-CUSTOM")
    assert inv.statuses() == ["in_production", "reserved"]
    assert allocations(inv) == {EAST: [(1, "SIGN-CUSTOM", 4)]}
    assert after[("SIGN-CUSTOM", EAST)] == (4, 4)


# ---- shortage and the customer's decision ----
async def test_no_stock_and_no_purchase_order_offers_options(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 3)
    await count(inv, "SKU-0002", WEST, 50)
    after = await approve(inv, "I-12", substitutes=["SKU-0002"])
    [st] = inv.out[topics.ORDERS_STATUS]
    assert st["status"] == "awaiting_customer_decision"
    assert [(r["code"], r["field"]) for r in st["reasons"]] == [("insufficient_stock", "lines[line_no=1]")]
    assert st["details"]["options"] == {
        "ship_partial": {"1": 3},
        "remainder": ["cancel", "backorder"],
        "wait": {"promise_date": None},
        "substitute": {"1": ["SKU-0002"]},
        "cancel": True,
    }
    assert not inv.out[topics.INVENTORY_ALLOCATIONS]
    assert after[("SKU-0001", EAST)] == (3, 0)  # an order waiting for a decision holds nothing


async def test_ship_partial_reserves_what_there_is(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-13")
    after = await shortage(inv, "I-13", "cmd-13", "ship_partial")
    assert inv.statuses() == ["awaiting_customer_decision", "reserved"]
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 6)]}
    assert inv.out[topics.INVENTORY_ALLOCATIONS][-1]["complete"] is False
    assert after[("SKU-0001", EAST)] == (6, 6)


def sent(h: Harness) -> list[dict[str, Any]]:
    """The allocations published, as (warehouse, line, sku, quantity) rows, with their flags."""
    return [
        {
            "rows": [
                (a["warehouse"], l["line_no"], l["sku"], l["quantity"]) for a in e["allocations"] for l in a["lines"]
            ],
            "complete": e["complete"],
            "more_to_come": e["more_to_come"],
        }
        for e in reserved_events(h)
    ]


async def test_ship_partial_with_the_remainder_backordered_ships_the_part_then_the_rest(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-40")
    after = await shortage(inv, "I-40", "cmd-40", "ship_partial", remainder="backorder")
    assert inv.statuses() == ["awaiting_customer_decision", "backordered"]
    st = inv.out[topics.ORDERS_STATUS][-1]
    assert st["details"]["more_to_come"] is True and st["details"]["complete"] is False
    assert sent(inv) == [{"rows": [(EAST, 1, "SKU-0001", 6)], "complete": False, "more_to_come": True}]
    [need] = [e for e in inv.out[topics.INVENTORY_ALLOCATIONS] if e["type"] == "supply.needed"]
    assert need["kind"] == "purchase" and need["quantity"] == 4
    assert after[("SKU-0001", EAST)] == (6, 6)
    after = await receive(inv, "SKU-0001", WEST, 4, "rcv-40")  # the part is not shipped yet: only the rest goes
    assert sent(inv)[1] == {"rows": [(WEST, 1, "SKU-0001", 4)], "complete": True, "more_to_come": False}
    assert inv.statuses() == ["awaiting_customer_decision", "backordered"]  # fulfillment tells when it ships
    assert after[("SKU-0001", EAST)] == (6, 6) and after[("SKU-0001", WEST)] == (4, 4)


async def test_the_backordered_remainder_after_the_part_shipped_is_allocated_alone(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-41")
    await shortage(inv, "I-41", "cmd-41", "ship_partial", remainder="backorder")
    after = await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("I-41", EAST, 6), okey("I-41"))
    assert after[("SKU-0001", EAST)] == (0, 0)
    after = await receive(inv, "SKU-0001", EAST, 4, "rcv-41")
    assert sent(inv)[1] == {"rows": [(EAST, 1, "SKU-0001", 4)], "complete": True, "more_to_come": False}
    assert after[("SKU-0001", EAST)] == (4, 4)


async def test_the_part_handed_to_fulfillment_is_never_reallocated(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-42")
    await shortage(inv, "I-42", "cmd-42", "ship_partial", remainder="backorder")
    await approve_priority(inv, "I-43", qty=6)
    assert status_of(inv, "I-43")[-1]["status"] == "awaiting_customer_decision"  # no approval asked for
    assert not revocations(inv)


async def test_cancelling_a_part_shipped_order_releases_the_part_and_its_backorder(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-44", 4, 20), "SKU-0001")  # after the requested date
    await approve(inv, "I-44")
    await shortage(inv, "I-44", "cmd-44", "ship_partial", remainder="backorder")
    st = inv.out[topics.ORDERS_STATUS][-1]
    in_20_days = (NOW.date() + timedelta(days=20)).isoformat()
    assert st["status"] == "backordered" and st["promise_date"] == in_20_days
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("I-44"), okey("I-44"))
    assert after[("SKU-0001", EAST)] == (6, 0)
    await approve(inv, "I-45", [("SKU-0001", 10, "11.00")])  # the purchase order's 4 are promised to nobody now
    assert status_of(inv, "I-45")[-1]["details"]["options"]["wait"] == {"promise_date": in_20_days}


async def test_duplicate_part_and_backorder_decision_is_applied_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-46")
    for _ in range(2):
        after = await shortage(inv, "I-46", "cmd-46", "ship_partial", remainder="backorder")
    assert inv.statuses() == ["awaiting_customer_decision", "backordered"]
    assert len(reserved_events(inv)) == 1 and after[("SKU-0001", EAST)] == (6, 6)


async def test_ship_partial_with_nothing_available_is_refused_and_keeps_the_order(inv: Harness) -> None:
    await approve(inv, "I-14")
    await shortage(inv, "I-14", "cmd-14a", "ship_partial")
    refused = inv.out[topics.ORDERS_STATUS][-1]
    assert refused["status"] == "awaiting_customer_decision"
    assert [r["code"] for r in refused["reasons"]] == ["nothing_available"]
    assert refused["details"] == {"refused": "order.shortage-decision"}
    await shortage(inv, "I-14", "cmd-14b", "wait")  # the order still awaits a decision
    assert inv.statuses()[-1] == "backordered"


async def test_wait_backorders_and_asks_purchasing(inv: Harness) -> None:
    await approve(inv, "I-15")
    await shortage(inv, "I-15", "cmd-15", "wait")
    assert inv.statuses() == ["awaiting_customer_decision", "backordered"]
    [need] = inv.out[topics.INVENTORY_ALLOCATIONS]
    assert need["type"] == "supply.needed" and need["kind"] == "purchase" and need["quantity"] == 10
    assert need["needed_by"] == REQUESTED.isoformat()
    after = await receive(inv, "SKU-0001", WEST, 10, "rcv-15")
    assert inv.statuses()[-1] == "reserved" and allocations(inv) == {WEST: [(1, "SKU-0001", 10)]}
    assert after[("SKU-0001", WEST)] == (10, 10)


async def test_substitute_reserves_the_substitute(inv: Harness) -> None:
    await count(inv, "SKU-0002", WEST, 50)
    await approve(inv, "I-16", substitutes=["SKU-0002"])
    after = await shortage(inv, "I-16", "cmd-16", "substitute", substitute_sku="SKU-0002")
    assert inv.statuses() == ["awaiting_customer_decision", "reserved"]
    assert allocations(inv) == {WEST: [(1, "SKU-0002", 10)]}
    assert after[("SKU-0002", WEST)] == (50, 10)


async def test_cancel_choice_cancels_and_tells_every_service(inv_open_loop: Harness) -> None:
    inv = inv_open_loop
    await count(inv, "SKU-0001", EAST, 4)
    await approve(inv, "I-17")
    await shortage(inv, "I-17", "cmd-17", "cancel")
    assert inv.statuses() == ["awaiting_customer_decision", "cancelled"]
    [ev] = inv.out[topics.ORDERS_CANCELLED]
    assert ev["order_key"] == okey("I-17") and ev["cancelled_by"] == "supervisor-1" and ev["_key"] == okey("I-17")
    # inventory consumes its own cancellation after the commit, as a real broker delivers it: nothing more happens
    raw = json.dumps({k: v for k, v in ev.items() if k != "_key"}).encode()
    await inv.processor.process([Incoming(topics.ORDERS_CANCELLED, 0, 1, okey("I-17"), raw)])
    assert inv.statuses() == ["awaiting_customer_decision", "cancelled"] and len(inv.out[topics.ORDERS_CANCELLED]) == 1
    await approve(inv, "I-17", revision=2)  # a cancelled order is not planned again
    assert inv.statuses() == ["awaiting_customer_decision", "cancelled"]
    assert (await levels(inv))[("SKU-0001", EAST)] == (4, 0)


async def test_decision_when_none_is_awaited_is_refused(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 50)
    await approve(inv, "I-18")
    after = await shortage(inv, "I-18", "cmd-18", "cancel")
    last = inv.out[topics.ORDERS_STATUS][-1]
    assert last["status"] == "reserved" and [r["code"] for r in last["reasons"]] == ["no_decision_awaited"]
    assert after[("SKU-0001", EAST)] == (50, 10)


# ---- release and consumption ----
async def test_cancellation_releases_every_reservation(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await count(inv, "SKU-0001", WEST, 6)
    await count(inv, "SKU-0002", EAST, 6)
    await approve(inv, "I-19", [("SKU-0001", 10, "11.00"), ("SKU-0002", 5, "12.00")])
    assert inv.statuses() == ["reserved"]
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("I-19"), okey("I-19"))
    assert {k: r for k, (_, r) in after.items()} == {
        ("SKU-0001", EAST): 0,
        ("SKU-0001", WEST): 0,
        ("SKU-0002", EAST): 0,
    }
    await approve(inv, "I-19", revision=2)  # a later approval of a cancelled order is ignored
    assert (await levels(inv))[("SKU-0001", EAST)] == (6, 0)


async def test_a_reservation_left_by_an_interrupted_batch_is_released_when_the_cancelled_order_comes_back(
    inv: Harness,
) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-20", [("SKU-0001", 4, "11.00")])
    # as if the batch died after its stock write: the order document was never written; then the cancel came
    del inv.memory.rows[store.ORDERS.key(okey("I-20"))]
    died(inv)
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("I-20"), okey("I-20"))
    assert after[("SKU-0001", EAST)] == (6, 4)  # inventory cannot tell whose reservation it is yet
    after = await approve(inv, "I-20", [("SKU-0001", 4, "11.00")])  # the interrupted batch, redelivered
    assert after[("SKU-0001", EAST)] == (6, 0)


async def test_cancelled_backorder_gives_up_its_promise(inv: Harness) -> None:
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-4", 10, 3), "SKU-0001")
    await approve(inv, "I-20")
    await put(inv, topics.ORDERS_CANCELLED, cancelled("I-20"), okey("I-20"))
    await approve(inv, "I-21")  # the PO is free to promise again
    assert inv.statuses() == ["backordered", "backordered"]
    after = await receive(inv, "SKU-0001", EAST, 10, "rcv-21", po="PO-4")
    assert [e["order_number"] for e in reserved_events(inv)] == [number("I-21")]
    assert after[("SKU-0001", EAST)] == (10, 10)


# ---- released stock goes to the orders waiting for it, in the same unit of work ----
async def test_cancellation_serves_the_backordered_orders_oldest_promise_first(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await count(inv, "SKU-0001", WEST, 5)
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-9", 30, 3), "SKU-0001")
    await approve(inv, "W-1")  # reserved: 10 in EAST
    await approve(inv, "W-2", [("SKU-0001", 8, "11.00")])  # holds the 5 in WEST, waits for 3
    await approve(inv, "W-3", [("SKU-0001", 4, "11.00")])  # waits for 4
    assert inv.statuses() == ["reserved", "backordered", "backordered"]
    inv.clear()
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("W-1"), okey("W-1"))
    assert [(m["channel_order_ref"], m["status"]) for m in inv.out[topics.ORDERS_STATUS]] == [
        ("W-2", "reserved"),
        ("W-3", "reserved"),
    ]
    assert [e["order_number"] for e in reserved_events(inv)] == [number("W-2"), number("W-3")]
    assert allocations(inv, 0) == {EAST: [(1, "SKU-0001", 3)], WEST: [(1, "SKU-0001", 5)]}
    assert after[("SKU-0001", EAST)] == (10, 7) and after[("SKU-0001", WEST)] == (5, 5)
    await approve(inv, "W-4", [("SKU-0001", 30, "11.00")])  # their promises were kept: PO-9 is free again
    assert inv.statuses()[-1] == "backordered"


async def test_cancellation_reserves_orders_awaiting_a_decision_that_it_now_covers(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "D-1")  # holds all 10
    await approve(inv, "D-2", [("SKU-0001", 12, "11.00")])  # more than will ever be free
    await approve(inv, "D-3", [("SKU-0001", 6, "11.00")])
    await approve(inv, "D-4", [("SKU-0001", 4, "11.00")])
    await approve(inv, "D-5", [("SKU-0001", 1, "11.00")])
    assert inv.statuses() == ["reserved", *["awaiting_customer_decision"] * 4]
    inv.clear()
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("D-1"), okey("D-1"))
    told = [(m["channel_order_ref"], m["status"]) for m in inv.out[topics.ORDERS_STATUS]]
    assert told == [("D-3", "reserved"), ("D-4", "reserved")]  # oldest first; D-2 is still short, D-5 too late
    assert [r["code"] for r in inv.out[topics.ORDERS_STATUS][0]["reasons"]] == ["stock_available"]
    assert after[("SKU-0001", EAST)] == (10, 10)
    inv.clear()
    await shortage(inv, "D-3", "cmd-d3", "ship_partial")  # the customer's answer comes too late
    [refused] = inv.out[topics.ORDERS_STATUS]
    assert refused["status"] == "reserved" and refused["reasons"][0]["code"] == "no_decision_awaited"
    stock = inv.memory.rows[store.STOCKS.key("SKU-0001")]  # D-2 and D-5 still await their decisions
    assert sorted(stock["state"]["deciding"]) == [f"{number('D-2')}#1", f"{number('D-5')}#1"]


async def test_a_count_that_frees_stock_serves_an_order_awaiting_a_decision(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 3)
    await approve(inv, "D-6", [("SKU-0001", 5, "11.00"), ("SKU-0002", 2, "12.00")])
    await count(inv, "SKU-0002", EAST, 2)  # still short of SKU-0001
    assert inv.statuses() == ["awaiting_customer_decision"]
    after = await count(inv, "SKU-0001", EAST, 5)
    assert inv.statuses() == ["awaiting_customer_decision", "reserved"]
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 5), (2, "SKU-0002", 2)]}
    assert after[("SKU-0001", EAST)] == (5, 5) and after[("SKU-0002", EAST)] == (2, 2)


async def test_priority_denial_gives_what_the_priority_order_held_to_the_waiting_orders(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 12)
    await approve(inv, "Q-1")  # holds 10
    await approve_priority(inv, "Q-2")  # holds the free 2, asks for 8 more
    await approve(inv, "Q-3", [("SKU-0001", 2, "11.00")])  # nothing free: awaits a decision
    inv.clear()
    after = await priority(inv, "Q-2", "cmd-q2", approve_it=False)
    told = [(m["channel_order_ref"], m["status"]) for m in inv.out[topics.ORDERS_STATUS]]
    assert told == [("Q-2", "awaiting_customer_decision"), ("Q-3", "reserved")]
    assert after[("SKU-0001", EAST)] == (12, 12)


async def test_duplicate_cancellation_serves_the_waiting_order_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "D-7")
    await approve(inv, "D-8")
    inv.clear()
    for _ in range(2):
        after = await put(inv, topics.ORDERS_CANCELLED, cancelled("D-7"), okey("D-7"))
    assert inv.statuses() == ["reserved"] and len(reserved_events(inv)) == 1
    assert after[("SKU-0001", EAST)] == (10, 10)


def shipped(ref: str, wh: str, qty: int, sid: str = "S-1") -> StockShipped:
    return StockShipped(
        event_id=f"shipped-{sid}", order_key=okey(ref), order_number=number(ref), channel="web",
        channel_order_ref=ref, revision=1, shipment_id=sid, warehouse=wh,
        lines=[ShipmentLine(line_no=1, sku="SKU-0001", quantity=qty)],
    )  # fmt: skip


async def test_shipment_consumes_on_hand_and_the_reservation(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    await approve(inv, "I-22")
    after = await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("I-22", EAST, 10), okey("I-22"))
    assert after[("SKU-0001", EAST)] == (90, 0)
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("I-22"), okey("I-22"))  # nothing left to release
    assert after[("SKU-0001", EAST)] == (90, 0)


async def test_count_below_reserved_is_dead_lettered(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 20)
    await approve(inv, "I-23")
    after = await count(inv, "SKU-0001", EAST, 5)
    [letter] = inv.out[topics.ORDERS_DLQ]
    assert "below the 10 units reserved" in letter["reason"]
    assert after[("SKU-0001", EAST)] == (20, 10)


async def test_amended_revision_is_planned_afresh(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 20)
    await approve(inv, "I-24")
    assert (await levels(inv))[("SKU-0001", EAST)] == (20, 10)
    after = await approve(inv, "I-24", [("SKU-0001", 15, "11.00")], revision=2)
    assert after[("SKU-0001", EAST)] == (20, 15)
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 15)]}
    [revoked] = revocations(inv)  # the shipments of revision 1 are voided before those of revision 2 open
    kinds = [e["type"] for e in inv.out[topics.INVENTORY_ALLOCATIONS]]
    assert kinds == ["allocation.reserved", "allocation.revoked", "allocation.reserved"]
    assert revoked["revision"] == 1 and "revision 2" in revoked["reason"]


async def test_amended_revision_that_runs_short_holds_nothing(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 20)
    await approve(inv, "I-25")
    after = await approve(inv, "I-25", [("SKU-0001", 10, "11.00"), ("SKU-0002", 5, "12.00")], revision=2)
    assert inv.statuses() == ["reserved", "awaiting_customer_decision"]
    assert after[("SKU-0001", EAST)] == (20, 0)
    after = await shortage(inv, "I-25", "cmd-25", "ship_partial")
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 10)]}
    assert after[("SKU-0001", EAST)] == (20, 10)


# ---- duplicate delivery: the same message twice, effects and outputs once ----
async def test_duplicate_approval_reserves_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    for _ in range(2):
        after = await approve(inv, "I-30")
    assert inv.statuses() == ["reserved"] and len(inv.out[topics.INVENTORY_ALLOCATIONS]) == 1
    assert after[("SKU-0001", EAST)] == (100, 10)


async def test_duplicate_cancellation_releases_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    await approve(inv, "I-31")
    await approve(inv, "I-32")
    for _ in range(2):
        after = await put(inv, topics.ORDERS_CANCELLED, cancelled("I-31"), okey("I-31"))
    assert after[("SKU-0001", EAST)] == (100, 10)
    assert inv.statuses() == ["reserved", "reserved"]


async def test_duplicate_shipment_consumes_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    await approve(inv, "I-33")
    for _ in range(2):
        after = await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("I-33", EAST, 10), okey("I-33"))
    assert after[("SKU-0001", EAST)] == (90, 0)


async def test_duplicate_count_is_applied_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    await approve(inv, "I-34")
    await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("I-34", EAST, 10), okey("I-34"))
    after = await count(inv, "SKU-0001", EAST, 100)  # the same count again must not undo the shipment
    assert after[("SKU-0001", EAST)] == (90, 0)


async def test_duplicate_receipt_is_applied_once(inv: Harness) -> None:
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-5", 10, 3), "SKU-0001")
    await approve(inv, "I-35")
    for _ in range(2):
        after = await receive(inv, "SKU-0001", EAST, 10, "rcv-35", po="PO-5")
    assert after[("SKU-0001", EAST)] == (10, 10)
    assert inv.statuses() == ["backordered", "reserved"] and len(reserved_events(inv)) == 1


async def test_duplicate_purchase_order_update_is_applied_once(inv: Harness) -> None:
    opened = po_update("PO-6", 10, 3)
    await put(inv, topics.INVENTORY_MOVEMENTS, opened, "SKU-0001")
    await put(inv, topics.INVENTORY_MOVEMENTS, po_update("PO-6", 10, 3, status="cancelled"), "SKU-0001")
    await put(inv, topics.INVENTORY_MOVEMENTS, opened, "SKU-0001")  # redelivered: must not reopen the PO
    await approve(inv, "I-36")
    assert inv.statuses() == ["awaiting_customer_decision"]


async def test_duplicate_production_done_is_applied_once(inv: Harness) -> None:
    await approve(inv, "I-37", [("SIGN-CUSTOM", 4, "120.00")], make_to_order=True, lead_days=3)
    [need] = inv.out[topics.INVENTORY_ALLOCATIONS]
    done = movement(
        "production.updated",
        "prod-37",
        production_request_id=need["request_id"],
        sku="SIGN-CUSTOM",
        quantity=4,
        expected_completion=NOW.date().isoformat(),
        status="done",
    )
    for _ in range(2):
        after = await put(inv, topics.INVENTORY_MOVEMENTS, done, "SIGN-CUSTOM")
    assert after[("SIGN-CUSTOM", EAST)] == (4, 4)
    assert inv.statuses() == ["in_production", "reserved"] and len(reserved_events(inv)) == 1


async def test_duplicate_shortage_decision_is_applied_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 6)
    await approve(inv, "I-38")
    for _ in range(2):
        after = await shortage(inv, "I-38", "cmd-38", "ship_partial")
    assert inv.statuses() == ["awaiting_customer_decision", "reserved"]
    assert len(reserved_events(inv)) == 1 and after[("SKU-0001", EAST)] == (6, 6)


# ---- priority allocation (handbook 2.3.3) ----
async def approve_priority(h: Harness, ref: str, qty: int = 10, **update: Any) -> Levels:
    msg = approved(ref, [("SKU-0001", qty, "11.00")]).model_copy(update=update or {"priority": "urgent"})
    return await put(h, topics.ORDERS_APPROVED, msg, okey(ref))


async def priority(h: Harness, ref: str, cid: str, approve_it: bool = True) -> Levels:
    cmd = command("order.priority-approval", ref, cid, approved=approve_it)
    return await put(h, topics.ORDERS_COMMANDS, cmd, okey(ref))


def status_of(h: Harness, ref: str) -> list[dict[str, Any]]:
    return [m for m in h.out[topics.ORDERS_STATUS] if m["channel_order_ref"] == ref]


async def test_urgent_order_asks_then_approval_moves_stock_and_replans_the_victim(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 12)
    await approve(inv, "P-1")  # a normal order holds 10
    after = await approve_priority(inv, "P-2")
    [ask] = status_of(inv, "P-2")
    assert ask["status"] == "awaiting_priority_approval"
    assert ask["details"]["reallocation"] == [
        {"order_number": number("P-1"), "line_no": 1, "sku": "SKU-0001", "quantity": 8}
    ]
    assert after[("SKU-0001", EAST)] == (12, 12)  # the free 2 are held for the urgent order; nothing moved yet
    inv.clear()
    after = await priority(inv, "P-2", "cmd-p2")
    [mine] = status_of(inv, "P-2")
    assert mine["status"] == "reserved" and mine["decided_by"] == "supervisor-1"
    assert [r["code"] for r in mine["reasons"]] == ["priority_reallocation_approved"]
    assert allocations(inv) == {EAST: [(1, "SKU-0001", 10)]} and reserved_events(inv)[0]["order_number"] == number(
        "P-2"
    )
    [lost] = status_of(inv, "P-1")
    assert lost["status"] == "awaiting_customer_decision" and lost["_key"] == okey("P-1")
    assert lost["decided_by"] == "supervisor-1" and number("P-2") in lost["reasons"][0]["message"]
    assert [r["code"] for r in lost["reasons"]] == ["reallocated_to_priority_order", "insufficient_stock"]
    assert lost["details"]["options"]["ship_partial"] == {"1": 2}
    [revoked] = revocations(inv)  # fulfillment voids the victim's shipments: their stock is gone
    assert revoked["_key"] == okey("P-1") and revoked["order_number"] == number("P-1")
    assert number("P-2") in revoked["reason"]
    assert after[("SKU-0001", EAST)] == (12, 10)  # the victim holds nothing while its customer decides
    await shortage(inv, "P-1", "cmd-p1", "ship_partial")  # the victim's own shortage path goes on as usual
    assert status_of(inv, "P-1")[-1]["status"] == "reserved"
    assert (await levels(inv))[("SKU-0001", EAST)] == (12, 12)


async def test_vip_order_denied_goes_down_the_normal_shortage_path(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "P-3")
    await approve_priority(inv, "P-4", vip=True)
    assert status_of(inv, "P-4")[-1]["status"] == "awaiting_priority_approval"
    after = await priority(inv, "P-4", "cmd-p4", approve_it=False)
    denied = status_of(inv, "P-4")[-1]
    assert denied["status"] == "awaiting_customer_decision"
    assert [r["code"] for r in denied["reasons"]] == ["priority_reallocation_denied", "insufficient_stock"]
    assert [m["status"] for m in status_of(inv, "P-3")] == ["reserved"]  # the normal order keeps its stock
    assert after[("SKU-0001", EAST)] == (10, 10)


async def test_repeated_priority_approval_is_applied_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "P-5")
    await approve_priority(inv, "P-6")
    for _ in range(2):
        after = await priority(inv, "P-6", "cmd-p6")
    assert [m["status"] for m in status_of(inv, "P-6")] == ["awaiting_priority_approval", "reserved"]
    assert [m["status"] for m in status_of(inv, "P-5")] == ["reserved", "awaiting_customer_decision"]
    assert len(reserved_events(inv)) == 2 and after[("SKU-0001", EAST)] == (10, 10)


async def test_priority_approval_for_an_order_not_awaiting_one_is_refused(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 50)
    await approve_priority(inv, "P-7")  # enough stock: reserved without asking
    after = await priority(inv, "P-7", "cmd-p7")
    refused = status_of(inv, "P-7")[-1]
    assert refused["status"] == "reserved" and refused["details"] == {"refused": "order.priority-approval"}
    assert [r["code"] for r in refused["reasons"]] == ["no_priority_approval_awaited"]
    assert after[("SKU-0001", EAST)] == (50, 10)


async def test_an_order_dispatched_meanwhile_keeps_its_stock(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "P-8")
    await approve_priority(inv, "P-9", qty=6)
    assert status_of(inv, "P-9")[-1]["status"] == "awaiting_priority_approval"
    await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("P-8", EAST, 4, sid="S-P8"), okey("P-8"))
    after = await priority(inv, "P-9", "cmd-p9")
    mine = status_of(inv, "P-9")[-1]
    assert mine["status"] == "awaiting_customer_decision"
    assert mine["reasons"][0]["code"] == "priority_reallocation_unavailable"
    assert [m["status"] for m in status_of(inv, "P-8")] == ["reserved"]
    assert after[("SKU-0001", EAST)] == (6, 6)


async def test_an_order_with_another_line_dispatched_meanwhile_keeps_its_stock(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await count(inv, "SKU-0002", EAST, 2)
    await approve(inv, "P-10", [("SKU-0001", 10, "11.00"), ("SKU-0002", 2, "12.00")])
    await approve_priority(inv, "P-11", qty=6)
    assert status_of(inv, "P-11")[-1]["status"] == "awaiting_priority_approval"
    line2 = shipped("P-10", EAST, 2, sid="S-P10").model_copy(
        update={"lines": [ShipmentLine(line_no=2, sku="SKU-0002", quantity=2)]}
    )
    await put(inv, topics.FULFILLMENT_DISPATCHED, line2, okey("P-10"))  # its SKU-0001 line is still unconsumed
    after = await priority(inv, "P-11", "cmd-p11")
    assert status_of(inv, "P-11")[-1]["reasons"][0]["code"] == "priority_reallocation_unavailable"
    assert [m["status"] for m in status_of(inv, "P-10")] == ["reserved"]
    assert after[("SKU-0001", EAST)] == (10, 10) and after[("SKU-0002", EAST)] == (0, 0)


# ---- commands for an order inventory does not know (issue 17) ----
@pytest.mark.parametrize(
    ("kind", "fields"),
    [("order.shortage-decision", {"choice": "cancel"}), ("order.priority-approval", {"approved": True})],
)
async def test_a_command_for_an_unknown_order_is_refused_and_a_later_real_order_inherits_nothing(
    inv: Harness, kind: str, fields: dict[str, Any]
) -> None:
    await count(inv, "SKU-0001", EAST, 50)
    for _ in range(2):  # a redelivery is refused again, with the same event id
        await put(inv, topics.ORDERS_COMMANDS, command(kind, "NOPE", "cmd-nope", **fields), okey("NOPE"))
    first, again = status_of(inv, "NOPE")
    assert first["event_id"] == again["event_id"] and first["details"] == {"refused": kind}
    assert first["status"] == "invalid" and first["decided_by"] == "supervisor-1"
    assert [r["code"] for r in first["reasons"]] == ["unknown_order"] and okey("NOPE") in first["reasons"][0]["message"]
    assert first["order_number"] is None and first["revision"] is None
    assert inv.memory.find(store.ORDER) == {}  # nothing recorded: no document, no inbox entry
    inv.clear()
    after = await approve(inv, "NOPE")  # the real order under that reference is planned as any other
    assert [m["status"] for m in status_of(inv, "NOPE")] == ["reserved"] and after[("SKU-0001", EAST)] == (50, 10)
    [doc] = inv.memory.find(store.ORDER).values()
    assert "cmd-nope" not in doc["inbox"] and doc["state"]["status"] == "reserved"


# ---- bounded stock documents: holds live with the orders, `recent` covers an interrupted batch ----
def stock_row(h: Harness, sku: str = "SKU-0001") -> dict[str, Any]:
    state: dict[str, Any] = h.memory.rows[store.STOCKS.key(sku)]["state"]
    return state


def hold_of(h: Harness, ref: str, sku: str = "SKU-0001") -> dict[str, int]:
    """Units per warehouse the order's own document says it holds of `sku`."""
    state = h.memory.rows[store.ORDERS.key(okey(ref))]["state"]
    held: dict[str, int] = {}
    for where in state.get("holds", {}).get(sku, {"r": {}})["r"].values():
        for wh, q in where.items():
            held[wh] = held.get(wh, 0) + q
    return held


def died(h: Harness) -> None:
    """The process that wrote the batch died with it: its memory of the batches that landed goes too."""
    h.memory.landed.clear()


async def interrupted(h: Harness, ref: str, qty: int) -> None:
    """Approve `ref` as a batch that died after its stock write: its order document is as it was before."""
    key = store.ORDERS.key(okey(ref))
    before = h.memory.rows.get(key)
    await approve(h, ref, [("SKU-0001", qty, "11.00")])
    if before is None:
        del h.memory.rows[key]
    else:
        h.memory.rows[key] = before
    died(h)


async def test_many_reservations_leave_the_stock_document_bounded(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 1000)
    for i in range(3 * store.RECENT_MAX):
        await approve(inv, f"B-{i}", [("SKU-0001", 2, "11.00")])
    doc = stock_row(inv)
    assert "reservations" not in doc and "owners" not in doc
    assert doc["reserved"] == {EAST: 6 * store.RECENT_MAX} and len(doc["recent"]) <= store.RECENT_MAX + 1
    assert all(hold_of(inv, f"B-{i}") == {EAST: 2} for i in range(3 * store.RECENT_MAX))


async def test_an_interrupted_approval_redelivered_neither_reserves_twice_nor_loses_its_reservation(
    inv: Harness,
) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    await interrupted(inv, "R-1", 4)
    others = 2 * store.RECENT_MAX
    for i in range(others):  # others write the stock meanwhile, pruning `recent`: R-1's hold must stay
        await approve(inv, f"O-{i}", [("SKU-0001", 1, "11.00")])
    recent = stock_row(inv)["recent"]
    assert okey("R-1") in recent and len(recent) <= store.RECENT_MAX + 1
    after = await approve(inv, "R-1", [("SKU-0001", 4, "11.00")])  # the batch, redelivered
    assert after[("SKU-0001", EAST)] == (100, 4 + others) and hold_of(inv, "R-1") == {EAST: 4}
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("R-1"), okey("R-1"))
    assert after[("SKU-0001", EAST)] == (100, others) and hold_of(inv, "R-1") == {}


async def test_an_interrupted_cancellation_redelivered_releases_exactly_what_was_held(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "C-1", [("SKU-0001", 3, "11.00")])
    await approve(inv, "C-2", [("SKU-0001", 5, "11.00")])
    key = store.ORDERS.key(okey("C-1"))
    before = inv.memory.rows[key]
    await put(inv, topics.ORDERS_CANCELLED, cancelled("C-1"), okey("C-1"))
    inv.memory.rows[key] = before  # the order write was lost: the order still says it holds 3
    died(inv)
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("C-1"), okey("C-1"))
    assert after[("SKU-0001", EAST)] == (10, 5) and hold_of(inv, "C-1") == {} and hold_of(inv, "C-2") == {EAST: 5}


async def test_an_old_stock_document_with_inline_reservations_is_read_and_its_holds_move_to_the_orders(
    inv: Harness,
) -> None:
    await count(inv, "SKU-0001", EAST, 10)
    await approve(inv, "L-1", [("SKU-0001", 3, "11.00")])
    await approve(inv, "L-2", [("SKU-0001", 4, "11.00")])
    rows = inv.memory.rows
    holds = {ref: rows[store.ORDERS.key(okey(ref))]["state"].pop("holds")["SKU-0001"] for ref in ("L-1", "L-2")}
    old = stock_row(inv)
    old.pop("reserved"), old.pop("recent")
    died(inv)
    old["reservations"] = {r: w for h in holds.values() for r, w in h["r"].items()}
    old["owners"] = {r: o for h in holds.values() for r, o in h["o"].items()}
    assert (await levels(inv))[("SKU-0001", EAST)] == (10, 7)
    after = await put(inv, topics.ORDERS_CANCELLED, cancelled("L-1"), okey("L-1"))
    assert after[("SKU-0001", EAST)] == (10, 4) and "reservations" not in stock_row(inv)
    assert hold_of(inv, "L-1") == {} and okey("L-2") in stock_row(inv)["recent"]


async def test_one_batch_of_many_orders_on_one_sku_records_each_orders_hold(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 20)
    refs = [f"M-{i}" for i in range(5)]
    records = [
        Incoming(topics.ORDERS_APPROVED, 0, i, okey(ref), wire(approved(ref, [("SKU-0001", 3, "11.00")])))
        for i, ref in enumerate(refs)
    ]
    records.append(Incoming(topics.ORDERS_CANCELLED, 0, 9, okey("M-1"), wire(cancelled("M-1"))))
    await inv.processor.process(records)
    assert (await levels(inv))[("SKU-0001", EAST)] == (20, 12)
    assert [hold_of(inv, ref) for ref in refs] == [{EAST: 3}, {}, {EAST: 3}, {EAST: 3}, {EAST: 3}]
    assert set(stock_row(inv)["recent"]) == {okey(ref) for ref in refs}


async def test_a_batch_interrupted_after_its_stock_write_keeps_every_hold_its_later_messages_saw(
    inv: Harness,
) -> None:
    # Later messages of a batch prune `recent` while earlier ones' order documents are decided but not yet
    # stored: the stock is written first, so their holds must stay in `recent` until the order writes land.
    await count(inv, "SKU-0001", EAST, 1000)
    refs = [f"G-{i}" for i in range(store.RECENT_MAX + 2)]
    records = [
        Incoming(topics.ORDERS_APPROVED, 0, 100 + i, okey(ref), wire(approved(ref, [("SKU-0001", 3, "11.00")])))
        for i, ref in enumerate(refs)
    ]
    await inv.processor.process(records)
    for ref in refs:  # the batch died after its stock write: no order document was stored
        del inv.memory.rows[store.ORDERS.key(okey(ref))]
    died(inv)
    await inv.processor.process(records)  # redelivered
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000, 3 * len(refs))
    assert all(hold_of(inv, ref) == {EAST: 3} for ref in refs)


async def test_a_hold_is_kept_in_recent_while_its_order_document_waits_in_the_same_batch(inv: Harness) -> None:
    # Chaos scenario 8 (two replicas): an approval redelivered after an interrupted batch leaves the stock as it
    # is (its hold is already in `recent`) but decides its order document anew; a later message of the same
    # batch prunes `recent` and must not take that undecided-to-disk document as proof.
    await count(inv, "SKU-0001", EAST, 1000)
    await interrupted(inv, "H-0", 4)
    refs = ["H-0", *(f"H-{i}" for i in range(1, store.RECENT_MAX + 2))]
    records = [
        Incoming(
            topics.ORDERS_APPROVED,
            0,
            200 + i,
            okey(ref),
            wire(approved(ref, [("SKU-0001", 4 if i == 0 else 1, "11.00")])),
        )
        for i, ref in enumerate(refs)
    ]
    await inv.processor.process(records)
    for ref in refs:  # the batch died after its stock write: no order document was stored
        inv.memory.rows.pop(store.ORDERS.key(okey(ref)), None)
    died(inv)
    await inv.processor.process(records)  # redelivered
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000, 4 + len(refs) - 1)
    assert hold_of(inv, "H-0") == {EAST: 4}


async def test_the_stock_lists_a_bounded_set_of_candidates_that_a_priority_order_finds(inv: Harness) -> None:
    n = store.CANDIDATES_MAX + 6
    await count(inv, "SKU-0001", EAST, 2 * n)
    for i in range(n):
        await approve(inv, f"V-{i}", [("SKU-0001", 2, "11.00")])
    candidates = stock_row(inv)["candidates"]
    assert len(candidates) == store.CANDIDATES_MAX and set(candidates.values()) == {2}
    await put(inv, topics.ORDERS_CANCELLED, cancelled("V-0"), okey("V-0"))
    assert okey("V-0") not in stock_row(inv)["candidates"]
    await approve_priority(inv, "P-9", qty=3)  # 2 free (V-0's), 1 to take from a listed order
    [ask] = status_of(inv, "P-9")
    assert ask["status"] == "awaiting_priority_approval" and len(ask["details"]["reallocation"]) == 1
    victim = okey(ask["details"]["reallocation"][0]["order_number"].removeprefix("SO-T-"))
    assert victim in {*stock_row(inv)["candidates"], *stock_row(inv)["recent"]}  # all the stock names


# ---- bounded `deciding`: lines of orders awaiting a decision spill to page documents and come back ----
def listed(h: Harness, sku: str = "SKU-0001") -> list[str]:
    """Every line listed as awaiting a decision: on the stock document, then on its pages not yet come back."""
    doc = stock_row(h, sku)
    first, after = doc.get("pages", [0, 0])
    pages = [h.memory.rows[store.PAGES.key(f"{sku}:{n}")]["state"] for n in range(first, after)]
    return sorted([*doc["deciding"], *(r for page in pages for r in page)])


def lines_of(refs: list[str]) -> list[str]:
    return sorted(f"{number(ref)}#1" for ref in refs)


async def test_a_long_shortage_queue_keeps_the_stock_document_bounded_and_serves_every_order(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 1)
    refs = [f"Q-{i}" for i in range(store.DECIDING_MAX + 6)]
    for ref in refs:
        await approve(inv, ref, [("SKU-0001", 2, "11.00")])
    assert set(inv.statuses()) == {"awaiting_customer_decision"}
    doc = stock_row(inv)
    assert len(doc["deciding"]) <= store.DECIDING_MAX and doc["pages"] == [0, 1]
    assert listed(inv) == lines_of(refs)  # each line once: none lost, none twice
    inv.clear()
    await approve(inv, refs[-1], [("SKU-0001", 2, "11.00")])  # a duplicate delivery changes nothing
    assert inv.statuses() == [] and listed(inv) == lines_of(refs)
    await count(inv, "SKU-0001", EAST, 2 * len(refs))  # enough for every order: those listed inline are served
    first = inv.statuses()
    assert first == ["reserved"] * len(first) and 0 < len(first) < len(refs)
    assert stock_row(inv)["pages"] == [1, 1] and len(listed(inv)) == len(refs) - len(first)  # the page came back
    await count(inv, "SKU-0001", EAST, 2 * len(refs) + 1)  # the next offer of stock reaches them
    assert inv.statuses() == ["reserved"] * len(refs) and listed(inv) == []
    assert (await levels(inv))[("SKU-0001", EAST)] == (2 * len(refs) + 1, 2 * len(refs))


async def test_a_spill_interrupted_before_its_stock_write_loses_no_line_when_redelivered(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 1)
    refs = [f"S-{i}" for i in range(store.DECIDING_MAX + 1)]
    for ref in refs[:-1]:
        await approve(inv, ref, [("SKU-0001", 2, "11.00")])
    assert "pages" not in stock_row(inv)
    stock_key, order_key = store.STOCKS.key("SKU-0001"), store.ORDERS.key(okey(refs[-1]))
    before = inv.memory.rows[stock_key]
    await approve(inv, refs[-1], [("SKU-0001", 2, "11.00")])  # spills a page: written first
    assert store.PAGES.key("SKU-0001:0") in inv.memory.rows
    inv.memory.rows[stock_key] = before  # the batch died after its page write
    died(inv)
    del inv.memory.rows[order_key]
    await approve(inv, refs[-1], [("SKU-0001", 2, "11.00")])  # redelivered: the page is written again
    assert stock_row(inv)["pages"] == [0, 1] and listed(inv) == lines_of(refs)


def loads(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every document key the store is asked to load from now on, in order."""
    loaded: list[str] = []
    load_many = h.memory.load_many

    async def spy(keys: Any) -> Any:
        keys = list(keys)
        loaded.extend(keys)
        return await load_many(keys)

    monkeypatch.setattr(h.memory, "load_many", spy)
    return loaded


# ---- an order served in full never reads its substitutes' stock ----
async def test_the_substitutes_stock_is_read_only_for_an_order_that_is_short(
    inv: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await count(inv, "SKU-0001", EAST, 12)
    await count(inv, "SKU-0002", WEST, 50)
    loaded = loads(inv, monkeypatch)
    await approve(inv, "U-1", substitutes=["SKU-0002"])  # 10 of 12: served in full
    assert inv.statuses() == ["reserved"] and store.STOCKS.key("SKU-0002") not in loaded
    await approve(inv, "U-2", substitutes=["SKU-0002"])  # 10 of the 2 left: short, SKU-0002 is offered
    assert inv.statuses()[-1] == "awaiting_customer_decision" and store.STOCKS.key("SKU-0002") in loaded
    [short] = [m for m in inv.out[topics.ORDERS_STATUS] if m["channel_order_ref"] == "U-2"]
    assert short["details"]["options"]["substitute"] == {"1": ["SKU-0002"]}


# ---- shipments: the order document remembers them; a stock lists them only until that document is stored ----
def shipment(ref: str, sid: str, lines: list[tuple[int, str, int]], wh: str = EAST) -> StockShipped:
    return shipped(ref, wh, 0, sid).model_copy(
        update={"lines": [ShipmentLine(line_no=n, sku=sku, quantity=q) for n, sku, q in lines]}
    )


async def test_many_shipments_leave_the_stock_document_bounded(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 1000)
    n = 3 * store.SHIPPED_MAX
    for i in range(n):
        await approve(inv, f"K-{i}", [("SKU-0001", 2, "11.00")])
        await put(
            inv, topics.FULFILLMENT_DISPATCHED, shipment(f"K-{i}", f"S-K{i}", [(1, "SKU-0001", 2)]), okey(f"K-{i}")
        )
    row = inv.memory.rows[store.STOCKS.key("SKU-0001")]
    assert (
        not [c for c in row["inbox"] if c.startswith("shipped:")]
        and len(stock_row(inv)["shipped"]) <= store.SHIPPED_MAX + 1
    )
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000 - 2 * n, 0)
    before = await levels(inv)
    after = await put(inv, topics.FULFILLMENT_DISPATCHED, shipment("K-0", "S-K0", [(1, "SKU-0001", 2)]), okey("K-0"))
    assert after == before  # a redelivery long after: the order document remembers it


async def test_a_shipment_interrupted_after_part_of_its_stock_writes_consumes_each_stock_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 50)
    await count(inv, "SKU-0002", EAST, 50)
    await approve(inv, "J-1", [("SKU-0001", 5, "11.00"), ("SKU-0002", 7, "11.00")])
    rows, order_key = inv.memory.rows, store.ORDERS.key(okey("J-1"))
    order_before, second_before = rows[order_key], rows[store.STOCKS.key("SKU-0002")]
    msg = shipment("J-1", "S-J1", [(1, "SKU-0001", 5), (2, "SKU-0002", 7)])
    await put(inv, topics.FULFILLMENT_DISPATCHED, msg, okey("J-1"))
    rows[order_key], rows[store.STOCKS.key("SKU-0002")] = order_before, second_before  # only SKU-0001 was stored
    died(inv)
    for _ in range(2):  # redelivered, then delivered once more
        after = await put(inv, topics.FULFILLMENT_DISPATCHED, msg, okey("J-1"))
    assert after[("SKU-0001", EAST)] == (45, 0) and after[("SKU-0002", EAST)] == (43, 0)
    assert "S-J1" in rows[order_key]["state"]["dispatched"]


async def test_a_batch_of_shipments_interrupted_after_its_stock_write_consumes_each_once(inv: Harness) -> None:
    # Later shipments of the batch prune `shipped`: an order document decided in the batch is not stored yet.
    await count(inv, "SKU-0001", EAST, 1000)
    refs = [f"Y-{i}" for i in range(store.SHIPPED_MAX + 2)]
    for ref in refs:
        await approve(inv, ref, [("SKU-0001", 3, "11.00")])
    rows = inv.memory.rows
    before = {ref: rows[store.ORDERS.key(okey(ref))] for ref in refs}
    records = [
        Incoming(
            topics.FULFILLMENT_DISPATCHED, 0, 300 + i, okey(ref), wire(shipment(ref, f"S-{ref}", [(1, "SKU-0001", 3)]))
        )
        for i, ref in enumerate(refs)
    ]
    await inv.processor.process(records)
    rows.update({store.ORDERS.key(okey(ref)): doc for ref, doc in before.items()})  # no order document was stored
    died(inv)
    await inv.processor.process(records)  # redelivered
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000 - 3 * len(refs), 0)


async def test_a_shipment_of_an_order_inventory_never_planned_consumes_once(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 100)
    for _ in range(2):
        after = await put(inv, topics.FULFILLMENT_DISPATCHED, shipped("Z-1", EAST, 4, sid="S-Z1"), okey("Z-1"))
    assert after[("SKU-0001", EAST)] == (96, 0) and store.ORDERS.key(okey("Z-1")) not in inv.memory.rows


async def test_a_shipment_an_older_version_stored_on_the_stock_only_is_not_consumed_again(inv: Harness) -> None:
    # Before `shipped`, a stock document remembered each shipment in its inbox; a batch of that version
    # interrupted after its stock write is redelivered to this one.
    await count(inv, "SKU-0001", EAST, 100)
    await approve(inv, "X-1", [("SKU-0001", 4, "11.00")])
    rows, order_key, stock_key = inv.memory.rows, store.ORDERS.key(okey("X-1")), store.STOCKS.key("SKU-0001")
    order_before = rows[order_key]
    msg = shipment("X-1", "S-X1", [(1, "SKU-0001", 4)])
    await put(inv, topics.FULFILLMENT_DISPATCHED, msg, okey("X-1"))
    rows[order_key] = order_before
    rows[stock_key]["state"].pop("shipped")
    died(inv)
    rows[stock_key]["inbox"].append("shipped:S-X1")
    after = await put(inv, topics.FULFILLMENT_DISPATCHED, msg, okey("X-1"))
    assert after[("SKU-0001", EAST)] == (96, 0) and "S-X1" in rows[order_key]["state"]["dispatched"]


# ---- what a process's last write of a stock listed, its orders now carry: the next write drops it unloaded ----
async def test_a_stock_this_process_writes_lists_only_its_last_batch_and_loads_no_order_to_prune(
    inv: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await count(inv, "SKU-0001", EAST, 1000)
    loaded = loads(inv, monkeypatch)
    n = 3 * store.RECENT_MAX
    for i in range(n):
        ref = f"N-{i}"
        await approve(inv, ref, [("SKU-0001", 2, "11.00")])
        await put(inv, topics.FULFILLMENT_DISPATCHED, shipment(ref, f"S-{ref}", [(1, "SKU-0001", 1)]), okey(ref))
    doc = stock_row(inv)
    assert list(doc["recent"]) == [okey(f"N-{n - 1}")] and list(doc["shipped"]) == [f"S-N-{n - 1}"]
    assert loaded.count(store.ORDERS.key(okey("N-0"))) == 2  # its own two messages: no prune loaded it
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000 - n, n)


async def test_a_stock_another_replica_wrote_since_keeps_its_list_until_checked(inv: Harness) -> None:
    await count(inv, "SKU-0001", EAST, 1000)
    await approve(inv, "M-1", [("SKU-0001", 2, "11.00")])
    async with Harness(NAME, CONSUMES, build_for(InventorySettings())) as other:
        other.store = other.processor.store = MemoryDocStore(inv.memory.rows, inv.memory.markers)
        await other.send(topics.ORDERS_APPROVED, wire(approved("M-2", [("SKU-0001", 3, "11.00")])), okey("M-2"))
    await approve(inv, "M-3", [("SKU-0001", 4, "11.00")])  # the stock is no longer at the version it noted
    assert set(stock_row(inv)["recent"]) == {okey("M-1"), okey("M-2"), okey("M-3")}
    assert (await levels(inv))[("SKU-0001", EAST)] == (1000, 9)
