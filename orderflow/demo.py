"""`orderflow demo`: master data, stock, a stream of orders from every channel, the simulator, a table."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError

from contracts import topics
from orderflow import bus, lag, sample
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
POISON = [b"this is not json", b"[1, 2, 3]", b'{"type": "order.teleported", "version": 1}']


async def load_reference_data(bootstrap: str, say: Callable[[str], None], timeout: float = 60) -> None:
    """Publish master data and stock counts, then wait until review and inventory have consumed them."""
    prods = sample.products()
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in sample.customers()])
        await bus.publish(p, topics.MASTERDATA_PRODUCTS, [(x["sku"], x) for x in prods])
        await bus.publish(
            p, topics.INVENTORY_MOVEMENTS, [(s["sku"], s) for s in sample.stock([x["sku"] for x in prods])]
        )
    await wait_drained(bootstrap, say, timeout, groups=("review", "inventory"))


async def wait_drained(
    bootstrap: str, say: Callable[[str], None], timeout: float, groups: tuple[str, ...] = tuple(lag.GROUPS)
) -> bool:
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


async def run(
    bootstrap: str, count: int = 60, timeout: float = 180, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the demo against running services and return the figures it printed."""
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
    latest: dict[str, str] = {}
    reached: Counter[str] = Counter()
    first_seen: dict[tuple[str, str], float] = {}
    last_say = 0.0
    async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5):
        key = msg.get("_key")
        if key in keys and msg.get("status"):
            if (key, msg["status"]) not in first_seen:
                first_seen[(key, msg["status"])] = time.monotonic() - t0
                reached[msg["status"]] += 1
            latest[key] = msg["status"]
        settled = sum(1 for k in keys if latest.get(k) in SETTLED)
        now = time.monotonic()
        if now - last_say > 2:
            say(f"  {settled}/{len(keys)} orders settled after {now - t0:.1f}s ({dict(Counter(latest.values()))})")
            last_say = now
        if settled == len(keys) or now - t0 > timeout:
            break
    stop.set()
    await sim_task
    elapsed = time.monotonic() - t0
    final = Counter(latest.get(k, "(no status)") for k in keys)
    to_reserved = sorted(v for (k, s), v in first_seen.items() if s == "reserved")
    figures = {
        "orders": len(keys),
        "final": dict(final),
        "reached": dict(reached),
        "seconds": round(elapsed, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "median_s_to_reserved": to_reserved[len(to_reserved) // 2] if to_reserved else None,
    }
    say("")
    say(f"{'status':<28}{'orders now':>12}{'ever reached':>14}")
    for name in sorted(set(final) | set(reached), key=lambda s: -reached.get(s, 0)):
        say(f"{name:<28}{final.get(name, 0):>12}{reached.get(name, 0):>14}")
    say(
        f"{len(keys)} orders + {len(POISON)} unreadable (sent to orders.dlq) in {elapsed:.1f}s; "
        f"median submit->reserved {figures['median_s_to_reserved'] or 0:.2f}s"
    )
    return figures
