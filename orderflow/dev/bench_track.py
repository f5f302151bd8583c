"""`orderflow bench --track-orders N`: how fast `orderflow track` answers with N orders in fulfillment's read model.

Fills a scratch fulfillment database with N realistic order documents holding their timelines (built by the
service's own `timeline.append` from five statuses each) and their order-number aliases, then times lookups by
order number and by channel reference through the same `track.fetch` the command uses.
"""

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.public import OrderStatus
from orderflow import track
from services.fulfillment import store, timeline
from services.fulfillment.store import Order, Timeline

STEPS = ("received", "approved", "reserved", "shipped", "delivered")
CHUNK = 2000


def _timeline_docs(i: int, start: datetime) -> list[dict[str, Any]]:
    channel, ref, number = "web", f"TRK-{i:07d}", f"SO-20261127-{i:06d}"
    key = f"{channel}:{ref}"
    state: Timeline | None = None
    for n, status in enumerate(STEPS):
        msg = OrderStatus(
            event_id=f"trk-{i}-{n}",
            channel=channel,
            channel_order_ref=ref,
            revision=1,
            order_number=number,
            status=status,
            details={"lines": 3, "warehouse": "WH-EAST"},
            occurred_at=start + timedelta(minutes=n),
            decided_by="bench",
        )
        state = timeline.append(state or timeline.start(key, msg), msg) or state
    assert state is not None
    order = Order(key, channel, ref, timeline=state)
    return [{"_id": k, "v": 1, "state": doc, "inbox": [], "pending": []} for k, doc in store.timeline_rows(order)]


async def run(uri: str, orders: int, say: Callable[[str], None], lookups: int = 200) -> dict[str, Any]:
    """Fill a scratch read model with `orders` timelines, time `track` lookups, drop it; the figures."""
    database = f"benchtrack_{uuid.uuid4().hex[:8]}"
    client = track.client(uri)
    collection = client[f"{database}_{track.SERVICE}"][track.SERVICE]
    try:
        start, began = datetime(2026, 11, 27, tzinfo=UTC), time.perf_counter()
        for first in range(0, orders, CHUNK):
            docs = [d for i in range(first, min(orders, first + CHUNK)) for d in _timeline_docs(i, start)]
            await collection.insert_many(docs, ordered=False)
            if (first // CHUNK) % 10 == 0 or first + CHUNK >= orders:
                done, spent = min(orders, first + CHUNK), time.perf_counter() - began
                say(f"  read model: {done:,}/{orders:,} orders ({spent:.0f}s)")
        filled = time.perf_counter() - began
        rng = random.Random(7)
        picks = [rng.randrange(orders) for _ in range(lookups)]
        figures: dict[str, Any] = {"orders": orders, "documents": 2 * orders, "fill_seconds": round(filled, 1)}
        refs: dict[str, Callable[[int], str]] = {
            "by_number": lambda i: f"SO-20261127-{i:06d}",
            "by_channel_ref": lambda i: f"web:TRK-{i:07d}",
        }
        for label, ref in refs.items():
            times = []
            for i in picks:
                t = time.perf_counter()
                found = await track.fetch(ref(i), uri, database)
                times.append((time.perf_counter() - t) * 1000)
                if found is None or found["order_key"] != f"web:TRK-{i:07d}":
                    raise RuntimeError(f"track found {found and found['order_key']} for order {i}")
            times.sort()
            figures[label] = {
                "p50_ms": round(statistics.median(times), 1),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 1),
                "max_ms": round(times[-1], 1),
            }
            say(
                f"  track {label}: p50 {figures[label]['p50_ms']} ms, p99 {figures[label]['p99_ms']} ms "
                f"over {lookups} lookups (each a new connection, as the command makes)"
            )
        return figures
    finally:
        await client.drop_database(f"{database}_{track.SERVICE}")
        await client.close()


def main(uri: str, orders: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the track benchmark and print its figures."""
    say(f"track benchmark: {orders:,} orders in a scratch fulfillment read model")
    return asyncio.run(run(uri, orders, say))
