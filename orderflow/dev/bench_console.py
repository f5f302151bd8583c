"""`python -m orderflow.dev.bench_console [--orders 100000]`: how fast the console's queues answer with N orders
in its read model.

Fills a scratch console database with N orders in a realistic mix of statuses (ages up to a week, every channel, 50
customers) with their queue rows, loads the in-memory queue index as the console does at start, then times each
queue's first page, 20 pages deep by the keyset cursor, the filters, the stuck queue, the counts the home page
shows and a search, and prints the time to read 50 documents by `_id` (what each page reads). Not a test: run it by
hand on a quiet machine.
"""

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient

from orderflow.console import queues
from orderflow.console.readmodel import ReadModel, _terms, row
from orderflow.dashboard_state import parse_stuck

MIX = {"delivered": 55, "reserved": 8, "shipped": 6, "cancelled": 4, "rejected": 3, "needs_clarification": 5,
       "in_review": 6, "awaiting_customer_decision": 5, "awaiting_priority_approval": 3, "delivery_exception": 2,
       "backordered": 3}  # fmt: skip
CHANNELS = ("web", "edi", "email", "fax", "phone", "sales_rep")
CHUNK = 2000


def order_doc(i: int, rng: random.Random, now: float) -> dict[str, Any]:
    """One order document as the read model stores it."""
    status = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    channel = CHANNELS[i % len(CHANNELS)]
    key = f"{channel}:BENCH-{i:07d}"
    since = now - rng.uniform(0, 7 * 86400)
    doc: dict[str, Any] = {
        "_id": key, "channel": channel, "channel_order_ref": f"BENCH-{i:07d}", "status": status, "at": since,
        "offset": i, "since": since, "last_event": f"bench-{i}", "order_number": f"SO-20261203-{i:06d}",
        "customer_id": f"C-{1001 + i % 50}", "customer_name": f"Customer {i % 50}", "revision": 1,
        "reasons": [{"code": "customisation_review", "field": "special_requirements.notes", "message": "logo"}]
        if status == "in_review" else [],
        "details": {}, "updated": now,
    }  # fmt: skip
    doc["terms"] = _terms(key, doc)
    return doc


async def timed(label: str, runs: int, fn: Callable[[], Awaitable[Any]], say: Callable[[str], None]) -> float:
    """The median milliseconds of `runs` calls of `fn`, printed."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1000)
    p50 = statistics.median(times)
    say(f"  {label:<46} p50 {p50:7.1f} ms   max {max(times):7.1f} ms")
    return p50


async def run(uri: str, orders: int, say: Callable[[str], None], runs: int = 15) -> dict[str, float]:
    """Fill a scratch console database with `orders` orders, time the queue queries, drop it; the p50s."""
    name = f"benchconsole_{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    model = ReadModel(client[name])
    figures: dict[str, float] = {}
    try:
        rng, now, began = random.Random(7), time.time(), time.perf_counter()
        for first in range(0, orders, CHUNK):
            docs = [order_doc(i, rng, now) for i in range(first, min(orders, first + CHUNK))]
            await model.orders.insert_many(docs, ordered=False)
            await model.rows.insert_many([row(d) for d in docs], ordered=False)
        say(f"  seeded {orders:,} orders in {time.perf_counter() - began:.0f} s")
        began = time.perf_counter()
        await model.load()
        figures["index load s"] = round(time.perf_counter() - began, 2)
        say(f"  queue index loaded at start in {figures['index load s']} s")

        async def counts() -> None:
            for q in queues.QUEUES.values():
                model.count(q, thresholds)

        thresholds = parse_stuck(queues.STUCK)
        for q in queues.QUEUES.values():
            figures[f"{q.name} first page"] = await timed(
                f"{q.title}: first page", runs,
                lambda q=q: model.page(q, queues.Filters(), thresholds), say,  # type: ignore[misc]
            )  # fmt: skip

        async def deep() -> None:
            cursor = None
            for _ in range(20):
                _, more = await model.page(queues.QUEUES["review"], queues.Filters(), thresholds, cursor)
                if more is None:
                    return
                cursor = queues.parse_after(more)

        figures["review 20 pages deep"] = await timed("In review: 20 pages by cursor (total)", 3, deep, say)
        for label, filters in (("channel=fax", queues.Filters(channel="fax")),
                               ("customer=C-1007", queues.Filters(customer="C-1007")),
                               ("older than 3d", queues.Filters(older_than_s=3 * 86400))):  # fmt: skip
            figures[f"review {label}"] = await timed(
                f"In review, {label}", runs,
                lambda f=filters: model.page(queues.QUEUES["review"], f, thresholds), say,  # type: ignore[misc]
            )  # fmt: skip
        figures["home counts"] = await timed(
            "home page: the six queue counts", 5,
            counts, say,
        )  # fmt: skip
        figures["search"] = await timed(
            "search by order number", runs, lambda: model.search(f"SO-20261203-{orders // 2:06d}"), say
        )
        ids = [f"web:BENCH-{i:07d}" for i in range(0, orders, max(1, orders // 50))][:50]
        figures["50 orders by _id"] = await timed("50 order documents by _id (what a page reads)", runs,
                                                  lambda: model.documents(ids), say)  # fmt: skip
        return figures
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> None:
    """Run the console queue benchmark against MONGODB_URI (default: the local stack)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        from orderflow.dev import stack

        uri = stack.env()["MONGODB_URI"]
    print(f"console queue benchmark: {args.orders:,} orders in a scratch console read model")
    asyncio.run(run(uri, args.orders, print))


if __name__ == "__main__":
    main()
