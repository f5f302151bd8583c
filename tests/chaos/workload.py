"""The chaos workload: a tagged stream of orders from every channel, with corrections, duplicates,
cancellations, shortages and poison messages, published at a steady rate so faults land mid-stream."""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts import topics
from orderflow import bus, sample

# Shares of the orders (the rest are normal orders that end `reserved`).
SHARES = {"incomplete": 0.08, "duplicate": 0.05, "cancel": 0.03, "shortage": 0.02}
POISON_COUNT = 20


@dataclass(frozen=True)
class Send:
    """One message to publish `at` seconds after the stream starts."""

    at: float
    topic: str
    key: str
    value: dict[str, Any] | bytes
    what: str  # order | correction | duplicate | cancel | poison | purchase | receipt


@dataclass(frozen=True)
class Planned:
    """What the workload did with one channel order."""

    key: str
    kind: str  # normal | incomplete | duplicate | cancel | shortage
    customer_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, quantity) of the complete revision
    final_revision: int


@dataclass
class Workload:
    """Everything published for one scenario."""

    tag: str
    sends: list[Send]
    orders: dict[str, Planned]
    poison: list[bytes]
    received: Counter[tuple[str, str]] = field(default_factory=Counter)  # goods receipts per (sku, warehouse)

    def counts(self) -> Counter[str]:
        """Orders per kind."""
        return Counter(p.kind for p in self.orders.values())


def _cancel(order: dict[str, Any], tag: str, i: int, now: datetime) -> dict[str, Any]:
    return {
        "type": "order.cancel",
        "version": 1,
        "command_id": f"chaos-cancel-{tag}-{i}",
        "channel": order["channel"],
        "channel_order_ref": order["channel_order_ref"],
        "issued_by": "chaos-suite",
        "issued_at": now.isoformat(),
        "reason": "customer changed their mind",
    }


def build(tag: str, n: int = 2000, rate: float = 200.0) -> Workload:
    """n orders at `rate` per second (kinds shuffled with a seeded Random), plus the poison messages."""
    rng = random.Random(f"chaos-{tag}")
    now = datetime.now(UTC)
    kinds = [k for k, share in SHARES.items() for _ in range(round(n * share))]
    kinds += ["normal"] * (n - len(kinds))
    rng.shuffle(kinds)
    sends: list[Send] = []
    orders: dict[str, Planned] = {}
    for i, kind in enumerate(kinds):
        at = i / rate
        ref = f"CHAOS-{tag}-{i:05d}"
        if kind == "shortage":
            base = sample.order(ref, rng, now, skus=["LAMP-RARE"], lines=1)
        else:
            base = sample.order(ref, rng, now)
        key = f"{base['channel']}:{ref}"
        final = base
        if kind == "incomplete":
            sends.append(Send(at, topics.ORDERS_SUBMITTED, key, sample.incomplete(base), "order"))
            final = {**base, "revision": 2}
            sends.append(Send(at + rng.uniform(0.5, 2.0), topics.ORDERS_SUBMITTED, key, final, "correction"))
        else:
            sends.append(Send(at, topics.ORDERS_SUBMITTED, key, base, "order"))
        if kind == "duplicate":
            sends.append(Send(at + rng.uniform(0.2, 3.0), topics.ORDERS_SUBMITTED, key, base, "duplicate"))
        if kind == "cancel":  # some land before the order is numbered, some after it is reserved
            sends.append(
                Send(at + rng.uniform(0.0, 3.0), topics.ORDERS_COMMANDS, key, _cancel(base, tag, i, now), "cancel")
            )
        orders[key] = Planned(
            key,
            kind,
            base["customer"]["customer_id"],
            tuple((line["sku"], line["quantity"]) for line in base["lines"]),
            final["revision"],
        )
    span = n / rate
    poison = [f"\x00<<chaos poison {tag} #{k:02d}>> this is not JSON".encode() for k in range(POISON_COUNT)]
    for k, raw in enumerate(poison):
        sends.append(Send((k + 0.5) * span / POISON_COUNT, topics.ORDERS_SUBMITTED, f"poison-{tag}-{k}", raw, "poison"))
    sends.sort(key=lambda s: s.at)
    return Workload(tag, sends, orders, poison)


@dataclass
class Published:
    """What the publisher actually sent."""

    messages: int = 0
    duplicated: Counter[str] = field(default_factory=Counter)  # what -> messages sent twice by the producer
    poison_records: int = 0
    paused_s: float = 0.0
    seconds: float = 0.0


async def publish(
    bootstrap: str,
    work: Workload,
    *,
    chunk_s: float = 0.1,
    dup_rate: float = 0.0,
    gate: asyncio.Event | None = None,
    on_progress: Callable[[float], Awaitable[None]] | None = None,
) -> Published:
    """Publish the workload on its schedule in chunks of `chunk_s`; `dup_rate` of the messages go out twice
    (producer-side duplicates); while `gate` is cleared (the broker is down) publishing pauses and the
    schedule shifts by the pause."""
    rng = random.Random(f"dups-{work.tag}")
    out = Published()
    started = time.monotonic()
    shift = 0.0
    i = 0
    async with bus.producer(bootstrap) as p:
        while i < len(work.sends):
            if gate is not None and not gate.is_set():
                paused = time.monotonic()
                await gate.wait()
                shift += time.monotonic() - paused
            slot_end = (time.monotonic() - started - shift) + chunk_s
            chunk: list[Send] = []
            while i < len(work.sends) and work.sends[i].at < slot_end:
                chunk.append(work.sends[i])
                i += 1
            by_topic: dict[str, list[tuple[str, Any]]] = {}
            for s in chunk:
                copies = 2 if dup_rate and rng.random() < dup_rate else 1
                if copies == 2:
                    out.duplicated[s.what] += 1
                if s.what == "poison":
                    out.poison_records += copies
                by_topic.setdefault(s.topic, []).extend([(s.key, s.value)] * copies)
            for topic, items in by_topic.items():
                out.messages += await bus.publish(p, topic, items)
            if on_progress is not None:
                await on_progress(time.monotonic() - started)
            await asyncio.sleep(max(0.0, started + shift + slot_end - time.monotonic()))
    out.paused_s = shift
    out.seconds = time.monotonic() - started
    return out


# ---- scenario 7: backorders refilled by goods receipts, priority orders taking stock ---------------------

SCARCE = "LAMP-RARE"  # 5 units counted (sample.stock); everything else of it arrives by goods receipts
BACKORDERS = 300
PRIORITY = 30
RECEIPTS = (4.0, 1.5, 12, 40)  # first at 4 s, then every 1.5 s: 12 receipts of 40 units ...
FINAL_RECEIPT_AT = 24.0  # ... and one that leaves SHORT_BY units of the orders' demand uncovered: no stock is
SHORT_BY = 20  # ever free, so each urgent order asks to take stock held by others, and a few orders keep waiting
PRIORITY_WINDOW = (6.0, 20.0)  # when the urgent orders come in
ORDINARY = [c["customer_id"] for c in sample.customers() if c["tier"] != "vip" and c["status"] == "active"]


def build_refill(tag: str, n: int = 2000, rate: float = 200.0) -> Workload:
    """The standard workload with `BACKORDERS` of its orders turned into orders of the scarce SKU, backordered
    against an open purchase order (published first), `PRIORITY` into urgent orders of it (which ask to take
    stock held by the others), and goods receipts arriving while the stream runs, short of the demand by
    SHORT_BY units: hundreds of waiting orders are refilled in a few large batches, some of them losing stock
    to a priority order on the way, and a few keep waiting."""
    work = build(tag, n, rate)
    rng = random.Random(f"refill-{tag}")
    now = datetime.now(UTC)
    normal = sorted(k for k, p in work.orders.items() if p.kind == "normal")
    chosen = rng.sample(normal, BACKORDERS + PRIORITY)
    kinds = dict.fromkeys(chosen[:BACKORDERS], "backorder") | dict.fromkeys(chosen[BACKORDERS:], "priority")
    sends: list[Send] = [
        Send(
            0.0,
            topics.INVENTORY_MOVEMENTS,
            SCARCE,
            {
                "type": "purchase-order.updated",
                "version": 1,
                "event_id": f"chaos-po-{tag}",
                "po_number": f"PO-CHAOS-{tag}",
                "sku": SCARCE,
                "warehouse": sample.WAREHOUSES[0],
                "quantity": 100_000,
                "eta": (now + timedelta(days=2)).date().isoformat(),
                "status": "open",
            },
            "purchase",
        )
    ]
    for s in work.sends:
        kind = kinds.get(s.key)
        if kind is None or s.what != "order":
            sends.append(s)
            continue
        assert isinstance(s.value, dict)
        ref = s.value["channel_order_ref"]
        customer = rng.choice(ORDINARY)  # a VIP's order would ask for a priority reallocation too
        body = sample.order(ref, rng, now, channel=s.value["channel"], customer=customer, skus=[SCARCE], lines=1)
        body["lines"][0]["quantity"] = rng.randint(1, 3)
        body["total_amount"] = f"{Decimal(body['lines'][0]['unit_price']) * body['lines'][0]['quantity']:.2f}"
        at = s.at
        if kind == "priority":  # once receipts have gone to waiting orders, so stock is held and none is free
            body["priority"] = "urgent"
            at = rng.uniform(*PRIORITY_WINDOW)
        sends.append(Send(at, s.topic, s.key, body, "order"))
        work.orders[s.key] = Planned(
            s.key, kind, body["customer"]["customer_id"], ((SCARCE, body["lines"][0]["quantity"]),), 1
        )
    for key, plan in work.orders.items():  # the shortages (of the scarce SKU) wait like them now, a VIP's urgently
        if plan.kind == "shortage":
            kind = "backorder" if plan.customer_id in ORDINARY else "priority"
            work.orders[key] = Planned(key, kind, plan.customer_id, plan.lines, plan.final_revision)
    demand = sum(q for p in work.orders.values() for sku, q in p.lines if sku == SCARCE)
    first, every, count, units = RECEIPTS
    arrivals = [(first + i * every, units) for i in range(count)]
    arrivals.append((FINAL_RECEIPT_AT, max(1, demand - SHORT_BY - count * units)))
    for i, (at, qty) in enumerate(arrivals):
        receipt = {
            "type": "stock.received",
            "version": 1,
            "event_id": f"chaos-receipt-{tag}-{i:02d}",
            "sku": SCARCE,
            "warehouse": sample.WAREHOUSES[0],
            "quantity": qty,
            "po_number": f"PO-CHAOS-{tag}",
        }
        sends.append(Send(at, topics.INVENTORY_MOVEMENTS, SCARCE, receipt, "receipt"))
        work.received[(SCARCE, sample.WAREHOUSES[0])] += qty
    sends.sort(key=lambda s: s.at)
    work.sends = sends
    return work


def priority_approval(key: str, tag: str, now: datetime) -> dict[str, Any]:
    """A supervisor's approval of the priority reallocation an order `key` ("channel:ref") asks for."""
    channel, ref = key.split(":", 1)
    return {
        "type": "order.priority-approval",
        "version": 1,
        "command_id": f"chaos-priority-{tag}-{ref}",
        "channel": channel,
        "channel_order_ref": ref,
        "issued_by": "chaos-supervisor",
        "issued_at": now.isoformat(),
        "approved": True,
    }
