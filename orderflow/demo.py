"""`orderflow demo`: master data, stock, a stream of orders from every channel, the simulator, a table."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError

from contracts import topics
from orderflow import bus, commands, lag, sample
from orderflow.simulator import Simulator
from services.runtime.kafka import ensure_topics

SETTLED = frozenset(
    {
        "delivered",
        "rejected",
        "needs_clarification",
        "invalid",
        "awaiting_customer_decision",
        "cancelled",
        "in_review",
        "backordered",
        "in_production",
    }
)
FINAL = frozenset({"delivered", "cancelled", "rejected"})  # where an answered shortage ends up
Say = Callable[[str], None]
POISON = [b"this is not json", b"[1, 2, 3]", b'{"type": "order.teleported", "version": 1}']


async def load_reference_data(bootstrap: str, say: Say, timeout: float = 60) -> None:
    """Publish master data and stock counts, then wait until review and inventory have consumed them."""
    prods = sample.products()
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in sample.customers()])
        await bus.publish(p, topics.MASTERDATA_PRODUCTS, [(x["sku"], x) for x in prods])
        await bus.publish(
            p, topics.INVENTORY_MOVEMENTS, [(s["sku"], s) for s in sample.stock([x["sku"] for x in prods])]
        )
    await wait_drained(bootstrap, say, timeout, groups=("review", "inventory"))


async def wait_drained(bootstrap: str, say: Say, timeout: float, groups: tuple[str, ...] = tuple(lag.GROUPS)) -> bool:
    """Wait until the given service groups have no lag; True if they drained in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lags = await lag.total(bootstrap, {g: lag.GROUPS[g] for g in groups})
        except KafkaError as exc:  # e.g. the group coordinator of a fresh broker is not up yet
            say(f"  waiting for Kafka's group coordinator ({type(exc).__name__})")
            await asyncio.sleep(1.0)
            continue
        if not any(lags.values()):
            return True
        say("  waiting for services to catch up: " + ", ".join(f"{g} lag {n}" for g, n in lags.items()))
        await asyncio.sleep(1.0)
    return False


class Progress:
    """What the demo saw on `orders.status` for its orders: latest status and message, first arrivals."""

    def __init__(self, keys: set[str], t0: float) -> None:
        self.keys, self.t0 = keys, t0
        self.latest: dict[str, dict[str, Any]] = {}
        self.reached: Counter[str] = Counter()
        self.first_seen: dict[tuple[str, str], float] = {}

    def see(self, msg: dict[str, Any]) -> None:
        key = msg.get("_key")
        if key in self.keys and msg.get("status"):
            if (key, msg["status"]) not in self.first_seen:
                self.first_seen[(key, msg["status"])] = time.monotonic() - self.t0
                self.reached[msg["status"]] += 1
            self.latest[key] = msg

    def status(self, key: str) -> str | None:
        return self.latest[key]["status"] if key in self.latest else None

    async def until(
        self, bootstrap: str, start: dict[int, int], keys: set[str], ends: frozenset[str], timeout: float, say: Say
    ) -> bool:
        """Follow `orders.status` from `start` until every one of `keys` is in `ends`: True; False when
        `timeout` seconds pass first."""
        deadline, last_say = time.monotonic() + timeout, 0.0
        async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5):
            self.see(msg)
            settled = sum(1 for k in keys if self.status(k) in ends)
            now = time.monotonic()
            if now - last_say > 2:
                counts = dict(Counter(self.status(k) for k in keys))
                say(f"  {settled}/{len(keys)} orders settled after {now - self.t0:.1f}s ({counts})")
                last_say = now
            if settled == len(keys):
                return True
            if now > deadline:
                return False
        return False

    def unsettled(self, keys: set[str], ends: frozenset[str]) -> Counter[str]:
        """How many of `keys` are not (yet) in `ends`, by their latest status."""
        return Counter(self.status(k) or "(no status)" for k in keys if self.status(k) not in ends)


def _choice(options: dict[str, Any], i: int) -> dict[str, Any]:
    """A customer's answer after the first (who ships what there is and backorders the rest): in turn a
    substitute (if one was offered, else wait), wait for purchasing, or cancel."""
    subs = sorted({s for offered in (options.get("substitute") or {}).values() for s in offered})
    turn = ("substitute", "wait", "cancel")[i % 3]
    if turn == "substitute" and not subs:
        turn = "wait"
    return {"choice": turn, "substitute_sku": subs[0] if turn == "substitute" else None}


async def _decide(bootstrap: str, key: str, fields: dict[str, Any], wait: float) -> dict[str, Any] | None:
    cmd = commands.build("order.shortage-decision", key, "demo-customer-service", **fields)
    return await commands.send(bootstrap, cmd, wait=wait)


async def receive(bootstrap: str, need: dict[str, int], say: Say, what: str) -> None:
    """Purchasing's goods arrive (`stock.received` at the first warehouse)."""
    stamp = f"{time.time():.3f}"
    received = [
        (sku, {"type": "stock.received", "version": 1, "event_id": f"demo-rcv-{sku}-{stamp}", "sku": sku,
               "warehouse": sample.WAREHOUSES[0], "quantity": qty, "po_number": None})
        for sku, qty in sorted(need.items()) if qty > 0
    ]  # fmt: skip
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.INVENTORY_MOVEMENTS, received)
    say(f"purchasing: {what} " + ", ".join(f"{q} × {s}" for s, q in sorted(need.items()) if q > 0))


async def answer_shortages(
    bootstrap: str, waiting: dict[str, dict[str, Any]], orders: dict[str, dict[str, Any]], say: Say
) -> Counter[str]:
    """Customer service answers each order awaiting a decision, as `orderflow order shortage` would: the
    biggest order ships what is in stock and backorders its rest, the others substitute, wait or cancel;
    then purchasing delivers what the orders asked for."""
    need: Counter[str] = Counter()
    for key in waiting:
        for line in orders[key]["lines"]:
            need[line["sku"]] += int(line["quantity"])
    size = {k: sum(int(l["quantity"]) for l in orders[k]["lines"]) for k in waiting}
    first = max(sorted(waiting), key=lambda k: size[k])
    answer = await _decide(bootstrap, first, {"choice": "ship_partial", "remainder": "backorder"}, 15)
    say(f"customer service: {first} ships what there is, the rest backordered -> {commands.describe(answer)}")
    chosen = Counter({"ship_partial (rest backorder)": 1})
    for i, key in enumerate(k for k in sorted(waiting) if k != first):
        fields = _choice((waiting[key].get("details") or {}).get("options") or {}, i)
        await _decide(bootstrap, key, fields, 0)
        chosen[fields["choice"] + (f" ({fields['substitute_sku']})" if fields.get("substitute_sku") else "")] += 1
    say("customer service answers the others: " + ", ".join(f"{n} × {c}" for c, n in sorted(chosen.items())))
    await asyncio.sleep(1.0)  # the decisions first, then the goods
    await receive(bootstrap, dict(need), say, "goods received:")
    return chosen


async def run(bootstrap: str, count: int = 60, timeout: float = 180, say: Say = print) -> dict[str, Any]:
    """Run the demo against running services and return the figures it printed: the orders settle, customer
    service answers the shortages, purchasing's goods arrive, and the answered orders settle again. Orders
    still unsettled when it gives up are counted in `unsettled` (by status) and named in the last lines."""
    started = time.monotonic()
    await ensure_topics(bootstrap)
    say("loading master data (21 customers, 13 products) and stock counts ...")
    await load_reference_data(bootstrap, say)
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    orders = sample.demo_orders(count, datetime.now(UTC))
    stop = asyncio.Event()
    sim = Simulator(bootstrap)
    sim_task = asyncio.create_task(sim.run(stop))
    say(f"publishing {len(orders)} orders from every channel (+{len(POISON)} unreadable messages) ...")
    t0 = time.monotonic()
    async with bus.producer(bootstrap) as p:
        await bus.publish(
            p, topics.ORDERS_SUBMITTED, [(f"{o['channel']}:{o['channel_order_ref']}", o) for o, _ in orders]
        )
        await bus.publish(p, topics.ORDERS_SUBMITTED, [("poison", raw) for raw in POISON])
    keys = {f"{o['channel']}:{o['channel_order_ref']}" for o, _ in orders}
    seen = Progress(keys, t0)
    await seen.until(bootstrap, start, keys, SETTLED, timeout, say)
    settled_s = time.monotonic() - t0
    unsettled = seen.unsettled(keys, SETTLED)
    to_reserved = sorted(v for (k, s), v in seen.first_seen.items() if s == "reserved")
    waiting = {k: m for k, m in seen.latest.items() if m["status"] == "awaiting_customer_decision"}
    chosen: Counter[str] = Counter()
    if waiting:
        by_key = {f"{o['channel']}:{o['channel_order_ref']}": o for o, _ in orders}
        chosen = await answer_shortages(bootstrap, waiting, by_key, say)
        await seen.until(bootstrap, start, set(waiting), FINAL, 60, say)
        unsettled += seen.unsettled(set(waiting), FINAL)
    stop.set()
    await sim_task
    elapsed = time.monotonic() - t0
    final = Counter(seen.status(k) or "(no status)" for k in keys)
    figures = {
        "orders": len(keys),
        "final": dict(final),
        "reached": dict(seen.reached),
        "decisions": dict(chosen),
        "seconds": round(elapsed, 2),
        "settled_seconds": round(settled_s, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "median_s_to_reserved": to_reserved[len(to_reserved) // 2] if to_reserved else None,
        "unsettled": dict(unsettled),
    }
    say("")
    say(f"{'status':<28}{'orders now':>12}{'ever reached':>14}")
    for name in sorted(set(final) | set(seen.reached), key=lambda s: -seen.reached.get(s, 0)):
        say(f"{name:<28}{final.get(name, 0):>12}{seen.reached.get(name, 0):>14}")
    if unsettled:
        say(
            f"gave up after {elapsed:.1f}s: {unsettled.total()} of {len(keys)} orders did not settle ("
            + ", ".join(f"{n} {status}" for status, n in unsettled.most_common())
            + "); `orderflow lag` shows whether the services are behind"
        )
    else:
        say(
            f"{len(keys)} orders + {len(POISON)} unreadable (sent to orders.dlq) settled in {settled_s:.1f}s; "
            f"median submit->reserved {figures['median_s_to_reserved'] or 0:.2f}s"
            + (f"; {len(waiting)} shortage(s) answered and settled again by {elapsed:.1f}s" if waiting else "")
        )
    say("follow one order: orderflow track <channel:ref or order number>")
    return figures
