"""Fulfillment's store writes per order: `python -m orderflow.dev.fulfillment_writes [--store memory|mongo]`.

Drives fulfillment's own processor (services.fulfillment.app.build) through the typical life of ORDERS orders:
`received` + the ship-to, `approved`, the reservation + `reserved`, picked, packed, dispatched, fulfillment's own
`shipped` coming back, delivered, its own `delivered` coming back (the invoice request goes out with it). The
statuses fulfillment publishes are fed back to it as the `orders.status` topic would. Two arrivals are measured:
`single` (every message a batch of its own: a quiet system) and `together` (the messages one upstream batch
publishes together arrive in one batch, CHUNK orders at a time: a busy system). Per order it prints the documents
written, their BSON bytes, the store round trips, and fulfillment's CPU per message (process time of
`Processor.process`, logging at WARNING). `--store mongo` runs on a scratch database of MONGODB_URI (FerretDB),
dropped afterwards, and adds the FerretDB + PostgreSQL CPU per order.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import bson
from pymongo import AsyncMongoClient

from contracts import topics
from contracts.internal import Allocation, AllocationReserved, OrderShipping
from contracts.public import OrderStatus, ShipmentLine, ShipTo
from orderflow.dev.store_cost import server_cpu
from services.fulfillment.app import build
from services.runtime.logging import configure
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import Doc, DocStore, Store

CHUNK = 50
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
Msg = tuple[str, str, bytes]  # topic, key, value
AnyStore = TypeVar("AnyStore", bound=Store)


def counting(base: type[AnyStore]) -> type[AnyStore]:
    """`base` with its document writes counted (documents, BSON bytes, round trips)."""

    class Counting(base):  # type: ignore[valid-type,misc]
        calls: Counter[str]

        async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
            dirty = [d for d in docs if d.dirty]
            size = sum(len(bson.encode(Store._body(d))) for d in dirty)
            written: list[Doc] = await super().save_many(dirty)
            self.calls["saves"] += 1 if written else 0
            self.calls["documents"] += len(written)
            self.calls["bytes"] += size
            for d in written:
                self.calls[f"kind {d.key.split(':', 1)[0]}"] += 1
            return written

    return Counting


class Sink:
    """A publisher that keeps what it is given (fulfillment's statuses go back in as input)."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send_all(self, messages: list[Outgoing]) -> None:
        """Keep the messages."""
        self.sent += messages


def _status(i: int, status: str, by: str, details: dict[str, Any], minute: int) -> Msg:
    ref = f"FW-{i:06d}"
    msg = OrderStatus(
        event_id=f"{status}-{ref}",
        channel="web",
        channel_order_ref=ref,
        revision=1,
        order_number=f"SO-FW-{i:06d}",
        status=status,
        details=details,
        occurred_at=NOW + timedelta(minutes=minute),
        decided_by=by,
    )
    return topics.ORDERS_STATUS, f"web:{ref}", msg.model_dump_json().encode()


def _identity(i: int) -> dict[str, Any]:
    ref = f"FW-{i:06d}"
    return {
        "order_key": f"web:{ref}",
        "order_number": f"SO-FW-{i:06d}",
        "channel": "web",
        "channel_order_ref": ref,
        "revision": 1,
    }


LINES = [("SKU-0001", 10, "11.00"), ("SKU-0002", 4, "25.50"), ("SKU-0003", 1, "99.00")]


def accepted_msgs(i: int) -> list[Msg]:
    """Intake's `received` and the ship-to, published together."""
    ship_to = ShipTo(recipient="Li Wei", line1="88 Wensan Rd", city="Hangzhou", postal_code="310012", country="CN")
    shipping = OrderShipping(event_id=f"shipping-{i}", **_identity(i), ship_to=ship_to)
    details = {"lines": [{"sku": s, "quantity": q} for s, q, _ in LINES], "total_amount": "297.00"}
    return [
        _status(i, "received", "intake/1", details, 0),
        (topics.ORDERS_SHIPPING, f"web:FW-{i:06d}", shipping.model_dump_json().encode()),
    ]


def approved_msgs(i: int) -> list[Msg]:
    """Review's `approved`."""
    return [_status(i, "approved", "review/1", {"credit": "within limit"}, 1)]


def reserved_msgs(i: int) -> list[Msg]:
    """Inventory's reservation and its `reserved`, published together."""
    lines = [ShipmentLine(line_no=n, sku=s, quantity=q) for n, (s, q, _) in enumerate(LINES, start=1)]
    ev = AllocationReserved(
        event_id=f"reserved-{i}",
        **_identity(i),
        customer_id="C-1001",
        currency="CNY",
        allocations=[Allocation(warehouse="WH-EAST", lines=lines)],
        prices={s: Decimal(p) for s, _, p in LINES},
        charges=[],
        packaging="export_carton",
        notes="deliver before noon",
        complete=True,
        more_to_come=False,
    )
    details = {"allocations": [{"warehouse": "WH-EAST", "lines": [l.model_dump() for l in lines]}]}
    return [
        (topics.INVENTORY_ALLOCATIONS, f"web:FW-{i:06d}", ev.model_dump_json().encode()),
        _status(i, "reserved", "inventory/1", details, 2),
    ]


def shipment_msg(i: int, kind: str, extra: dict[str, Any]) -> list[Msg]:
    """A warehouse or carrier event of the order's only shipment."""
    number = f"SO-FW-{i:06d}"
    body = {"type": f"shipment.{kind}", "version": 1, "shipment_id": f"{number}-WH-EAST-1", "order_number": number}
    return [(topics.FULFILLMENT_EVENTS, number, json.dumps(body | extra).encode())]


def own_statuses(sink: Sink, status: str) -> dict[str, list[Msg]]:
    """Fulfillment's published statuses named `status`, by order key, as they come back on `orders.status`."""
    out: dict[str, list[Msg]] = {}
    for o in sink.sent:
        if o.topic == topics.ORDERS_STATUS and json.loads(o.value)["status"] == status:
            out.setdefault(o.key, []).append((o.topic, o.key, o.value))
    return out


async def life(store: Store, orders: int, together: bool) -> dict[str, float]:
    """Run `orders` orders through their life; the counts per order and the CPU per message."""
    sink = Sink()
    processor = build(store, sink)
    offsets: Counter[str] = Counter()
    spent, messages = 0.0, 0

    async def feed(batch: list[Msg]) -> None:
        nonlocal spent, messages
        records = []
        for topic, key, value in batch:
            records.append(Incoming(topic, 0, offsets[topic], key, value))
            offsets[topic] += 1
        c0 = time.process_time()
        await processor.process(records)
        spent += time.process_time() - c0
        messages += len(records)

    async def step(groups: list[list[Msg]]) -> None:
        if together:
            for first in range(0, len(groups), CHUNK):
                await feed([m for g in groups[first : first + CHUNK] for m in g])
        else:
            for m in (m for g in groups for m in g):
                await feed([m])

    ids = range(orders)
    delivered = {"signed_by": "Li", "delivered_at": (NOW + timedelta(days=2)).isoformat()}
    await step([accepted_msgs(i) for i in ids])
    await step([approved_msgs(i) for i in ids])
    await step([reserved_msgs(i) for i in ids])
    await step([shipment_msg(i, "picked", {}) for i in ids])
    await step([shipment_msg(i, "packed", {}) for i in ids])
    await step([shipment_msg(i, "dispatched", {"carrier": "SF Express", "tracking_number": f"SF{i}"}) for i in ids])
    await step(list(own_statuses(sink, "shipped").values()))
    await step([shipment_msg(i, "delivered", delivered) for i in ids])
    await step(list(own_statuses(sink, "delivered").values()))
    invoices = sum(1 for o in sink.sent if o.topic == topics.FINANCE_INVOICE_REQUESTS)
    if invoices != orders:
        raise RuntimeError(f"{invoices} invoice requests for {orders} orders: the life did not complete")
    calls: Counter[str] = store.calls  # type: ignore[attr-defined]
    figures = {k: v / orders for k, v in calls.items()}
    return figures | {"messages": messages / orders, "cpu_ms_per_message": spent / messages * 1000}


def _print(label: str, f: dict[str, float], server_ms: float | None) -> None:
    kinds = ", ".join(f"{k[5:]} {v:.2f}" for k, v in sorted(f.items()) if k.startswith("kind "))
    srv = f", FerretDB+PG CPU {server_ms:.2f} ms/order" if server_ms is not None else ""
    print(
        f"{label:<9} per order: {f['messages']:.0f} messages, {f['documents']:.2f} documents written ({kinds}), "
        f"{f['bytes'] / 1024:.1f} KiB, {f['saves']:.2f} save round trips; "
        f"fulfillment CPU {f['cpu_ms_per_message']:.3f} ms/message{srv}",
        flush=True,
    )


async def run(where: str, uri: str, orders: int) -> None:
    """Measure both arrivals on one store kind."""
    client: AsyncMongoClient[dict[str, Any]] | None = None
    if where == "mongo":
        client = AsyncMongoClient(uri, tz_aware=True)
    db = f"fulfillment_writes_{os.getpid()}"
    try:
        for together in (False, True):
            label = "together" if together else "single"
            if client is not None:
                store: Store = counting(DocStore)(client[db][f"fulfillment_{label}"])
            else:
                store = counting(MemoryDocStore)()
            store.calls = Counter()  # type: ignore[attr-defined]
            s0 = server_cpu() if client is not None else 0.0
            figures = await life(store, orders, together)
            server = (server_cpu() - s0) / orders * 1000 if client is not None else None
            _print(label, figures, server)
    finally:
        if client is not None:
            await client.drop_database(db)
            await client.close()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", default="memory", help="memory (default) or mongo (MONGODB_URI)")
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"))
    parser.add_argument("--orders", default="200", help="orders to run through their life")
    args = parser.parse_args()
    if args.store not in ("memory", "mongo"):
        sys.exit(f"--store must be memory or mongo, got {args.store!r}")
    if not args.orders.isdigit() or int(args.orders) < 1:
        sys.exit(f"--orders must be a positive integer, got {args.orders!r}")
    configure("fulfillment", level="WARNING")  # per-message INFO lines would be most of the CPU measured
    asyncio.run(run(args.store, args.uri, int(args.orders)))


if __name__ == "__main__":
    main()
