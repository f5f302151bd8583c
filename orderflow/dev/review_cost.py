"""Review's cost per approval on the real store: `python -m orderflow.dev.review_cost [--levels 10,1000,10000]`.

Drives review's own processor (services.review.app) against FerretDB in a scratch database, with a publisher
that only counts, so the figures are review's alone: for one customer with N open approved orders (seeded
through the processor, in batches), PROBES single-order batches are timed, each an approval of one more order
of that customer. Per approval it prints the median wall time and review process CPU, the mean FerretDB +
PostgreSQL CPU over the probes (all such processes on the machine, which is shared: noisy), the store round
trips and documents written, and the size of the customer's credit document; then the ratio of the most open
to the fewest (growth; on a busy machine noise can make it < 1). A last section times the batch prefetch with
and without the master data documents (customer, products) that review reads for every order. Fifty
approvals of another customer warm the new collection up first.
"""

import json
import os
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
from pymongo import AsyncMongoClient

from contracts import topics
from contracts.internal import OrderAccepted, OrderLine
from orderflow import sample
from orderflow.dev.store_cost import Counting, Sink, record, run_at_levels, server_cpu
from services.review.app import build_for
from services.review.config import ReviewSettings

CUSTOMER = "C-1001"
PROBES = 40
SEED_BATCH = 500


def order(i: int, tag: str) -> OrderAccepted:
    """An order of CUSTOMER for 10 x SKU-0001 at list price."""
    ref = f"{tag}-{i}"
    line = OrderLine(
        line_no=1, sku="SKU-0001", product_name="Product 1", spec="STD", quantity=10, uom="EA", unit_price=Decimal(11)
    )
    return OrderAccepted(
        event_id=f"acc-{ref}",
        order_key=f"web:{ref}",
        order_number=f"SO-{ref}",
        channel="web",
        channel_order_ref=ref,
        revision=1,
        submitted_at=datetime.now(UTC),
        customer_id=CUSTOMER,
        lines=[line],
        currency="CNY",
        total_amount=Decimal(110),
        payment_method="credit_terms",
        requested_date=date.today() + timedelta(days=10),
        priority="normal",
        special_requirements={},
    )


async def run(uri: str, levels: list[int]) -> None:
    """Seed and probe each level; print the table."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    db = f"review_cost_{os.getpid()}"
    try:
        store = Counting(client[db]["review"])
        processor = build_for(ReviewSettings())(store, Sink())
        offset = 0

        async def process(topic: str, items: list[tuple[str, bytes]]) -> None:
            nonlocal offset
            await processor.process([record(topic, offset + i, k, v) for i, (k, v) in enumerate(items)])
            offset += len(items)

        limit = {"credit_limit": "1000000000000.00"}
        customers = [c | limit for c in sample.customers()]
        await process(topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], as_json(c)) for c in customers])
        await process(topics.MASTERDATA_PRODUCTS, [(p["sku"], as_json(p)) for p in sample.products()])
        warm = [order(i, "warm").model_copy(update={"customer_id": "C-1003"}) for i in range(50)]
        for m in warm:  # a new collection's first writes are slower: not part of any level
            await process(topics.ORDERS_ACCEPTED, [(m.order_key, m.model_dump_json().encode())])
        seeded, rows = 0, []
        for level in levels:
            while seeded < level:
                n = min(SEED_BATCH, level - seeded)
                msgs = [order(seeded + i, "seed") for i in range(n)]
                await process(topics.ORDERS_ACCEPTED, [(m.order_key, m.model_dump_json().encode()) for m in msgs])
                seeded += n
            wall, cpu = [], []
            store.calls.clear()
            s0 = server_cpu()
            for p in range(PROBES):
                m = order(p, f"probe{level}")
                c0, w0 = time.process_time(), time.perf_counter()
                await process(topics.ORDERS_ACCEPTED, [(m.order_key, m.model_dump_json().encode())])
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
            srv = (server_cpu() - s0) / PROBES
            seeded += PROBES
            raw = await client[db]["review"].find_one({"_id": f"credit:{CUSTOMER}"})
            size = len(bson.encode(raw)) if raw else 0
            row = {
                "open": level,
                "wall_ms": statistics.median(wall) * 1000,
                "wall_min_ms": min(wall) * 1000,
                "cpu_ms": statistics.median(cpu) * 1000,
                "server_cpu_ms": srv * 1000,
                "loads": store.calls["load"] / PROBES,
                "saves": store.calls["save"] / PROBES,
                "written": store.calls["written"] / PROBES,
                "markers": store.calls["marker"] / PROBES,
                "credit_bytes": size,
            }
            rows.append(row)
            print(
                f"open {level:>6}: approval {row['wall_ms']:6.2f} ms wall (min {row['wall_min_ms']:5.2f}), "
                f"review CPU {row['cpu_ms']:5.2f} ms, "
                f"FerretDB+PG CPU {row['server_cpu_ms']:5.2f} ms; per order: {row['loads']:.1f} loads, "
                f"{row['saves']:.1f} saves, {row['written']:.1f} documents written, {row['markers']:.1f} marker ops; "
                f"credit document {size} bytes",
                flush=True,
            )
        for name in ("wall_ms", "wall_min_ms", "cpu_ms"):
            first, last = float(rows[0][name]), float(rows[-1][name])
            print(f"growth {name}: {rows[-1]['open']} open / {rows[0]['open']} open = {last / first:.2f}")
        await prefetch_cost(store)
    finally:
        await client.drop_database(db)
        await client.close()


def as_json(doc: dict[str, Any]) -> bytes:
    """A master data record as JSON bytes."""
    return json.dumps(doc).encode()


async def prefetch_cost(store: Counting, reps: int = 300) -> None:
    """Time the batch prefetch of one order with and without its master data documents, alternating the two so
    that the machine's other load falls on both alike (medians)."""
    md = ["customer:" + CUSTOMER, "product:SKU-0001"]
    timings: dict[str, list[float]] = {"order + credit": [], "order + credit + customer + product": []}
    for i in range(reps):
        for label, extra in zip(timings, ([], md), strict=True):
            w0 = time.perf_counter()
            await store.load_many([f"order:web:seed-{i}", f"credit:{CUSTOMER}", *extra])
            timings[label].append(time.perf_counter() - w0)
    for label, values in timings.items():
        print(f"prefetch {label}: median {statistics.median(values) * 1000:.2f} ms wall per load")


def main() -> None:
    """Parse arguments and run."""
    run_at_levels(__doc__, "review", "open orders of the customer, increasing", run)


if __name__ == "__main__":
    main()
