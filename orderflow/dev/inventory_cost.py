"""Inventory's cost per reservation on the real store: `python -m orderflow.dev.inventory_cost [--levels ...]`.

Drives inventory's own processor (services.inventory.app) against FerretDB in a scratch database, with a
publisher that only counts, so the figures are inventory's alone: for one SKU with N open reservations (seeded
through the processor, in batches of SEED_BATCH approvals of one unit each), PROBES single-order batches are
timed, each the approval of one more order of that SKU. Per reservation it prints the median wall time and
inventory process CPU, the mean FerretDB + PostgreSQL CPU over the probes (every such process on the machine,
which is shared: noisy), the store round trips and documents written, and the size of the SKU's stock document;
then the ratio of the largest level's median to the smallest's. Per level it also times the query a priority
order would need for the orders holding the SKU if the stock document did not list its candidates. Run it
from another tree's `services` (PYTHONPATH first, that tree as the working directory) to compare designs.
"""

import json
import os
import statistics
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import bson
from pymongo import AsyncMongoClient

from contracts import topics
from contracts.internal import ApprovedLine, OrderApproved
from orderflow.dev.store_cost import Counting, Sink, record, run_at_levels, server_cpu
from services.inventory.app import build_for
from services.inventory.config import InventorySettings
from services.inventory.store import ORDER
from services.runtime.outbox import DocStore

SKU = "SKU-0001"
WARM = "SKU-0002"  # the warm-up orders' SKU
PROBES = 15
SEED_BATCH = 500


def approval(ref: str, sku: str = SKU) -> tuple[str, bytes]:
    """The approval of web order `ref` for one unit of `sku`, as (key, value)."""
    line = ApprovedLine(line_no=1, sku=sku, quantity=1, unit_price=Decimal(11))
    msg = OrderApproved(
        event_id=f"approved-{ref}",
        order_key=f"web:{ref}",
        order_number=f"SO-{ref}",
        channel="web",
        channel_order_ref=ref,
        revision=1,
        customer_id="C-1001",
        requested_date=date.today() + timedelta(days=10),
        currency="CNY",
        lines=[line],
        total_amount=Decimal(11),
    )
    return msg.order_key, msg.model_dump_json().encode()


async def run(uri: str, levels: list[int]) -> None:
    """Seed and probe each level; print the table."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    db = f"inventory_cost_{os.getpid()}"
    try:
        store = Counting(client[db]["inventory"])
        processor = build_for(InventorySettings())(store, Sink())
        offset = 0

        async def process(topic: str, items: list[tuple[str, bytes]]) -> None:
            nonlocal offset
            await processor.process([record(topic, offset + i, k, v) for i, (k, v) in enumerate(items)])
            offset += len(items)

        wh = InventorySettings().warehouse_preference[0]
        for sku in (SKU, WARM):
            count = {"type": "stock.counted", "version": 1, "event_id": f"count-{sku}", "sku": sku, "warehouse": wh}
            await process(topics.INVENTORY_MOVEMENTS, [(sku, json.dumps({**count, "on_hand": 10**9}).encode())])
        for i in range(50):  # a new collection's first writes are slower: not part of any level
            await process(topics.ORDERS_APPROVED, [approval(f"warm-{i}", WARM)])
        seeded, rows = 0, []
        for level in levels:
            while seeded < level:
                n = min(SEED_BATCH, level - seeded)
                await process(topics.ORDERS_APPROVED, [approval(f"seed-{seeded + i}") for i in range(n)])
                seeded += n
            wall, cpu = [], []
            store.calls.clear()
            s0 = server_cpu()
            for p in range(PROBES):
                c0, w0 = time.process_time(), time.perf_counter()
                await process(topics.ORDERS_APPROVED, [approval(f"probe{level}-{p}")])
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
            srv = (server_cpu() - s0) / PROBES
            seeded += PROBES
            raw = await client[db]["inventory"].find_one({"_id": f"stock:{SKU}"})
            q0 = time.perf_counter()  # the scan a priority order's candidates would need without `candidates`:
            # states are stored packed (one JSON string, ADR 0007), so the store cannot filter on holds.<sku>
            orders = await DocStore(client[db]["inventory"]).scan(ORDER)
            found = [key for key, state in orders.items() if SKU in (state or {}).get("holds", {})]
            query_ms = (time.perf_counter() - q0) * 1000
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
                "stock_bytes": len(bson.encode(raw)) if raw else 0,
                "holders_ms": query_ms,
                "holders": len(found),
            }
            rows.append(row)
            print(
                f"open {level:>6}: reservation {row['wall_ms']:6.2f} ms wall (min {row['wall_min_ms']:5.2f}), "
                f"inventory CPU {row['cpu_ms']:5.2f} ms, FerretDB+PG CPU {row['server_cpu_ms']:5.2f} ms; "
                f"per order: {row['loads']:.1f} loads, {row['saves']:.1f} saves, {row['written']:.1f} documents "
                f"written, {row['markers']:.1f} marker ops; stock document {row['stock_bytes']} bytes; "
                f"query for the SKU's holders {row['holders_ms']:.1f} ms ({row['holders']} found)",
                flush=True,
            )
        for name in ("wall_ms", "wall_min_ms", "cpu_ms", "server_cpu_ms"):
            first, last = float(rows[0][name]), float(rows[-1][name])
            ratio = f"{last / first:.2f}" if first > 0 else "n/a (no CPU measured at the smallest level)"
            print(f"ratio {name} at {levels[-1]} open / at {levels[0]} open: {ratio}")
    finally:
        await client.drop_database(db)
        await client.close()


def main() -> None:
    """Parse arguments and run."""
    run_at_levels(__doc__, "inventory", "open reservations of the SKU, increasing", run)


if __name__ == "__main__":
    main()
