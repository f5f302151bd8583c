"""Review end to end: three replicas racing for the credit of 20 customers near their limits."""

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from contracts import topics
from orderflow import bus, demo, procs, sample
from services.review import store as review_store
from services.runtime.outbox import DocStore
from tests.e2e.checks import statuses_until

pytestmark = pytest.mark.e2e
LIMIT = Decimal("2000.00")
OUTSTANDING = Decimal("500.00")
SETTLED: tuple[str, ...] = ("approved", "rejected", "in_review")


async def test_exposure_never_passes_the_limit_with_three_replicas(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag, rng, now = uuid.uuid4().hex[:6], random.Random(11), datetime.now(UTC)
    customers = [
        {
            **sample.customers()[0],
            "customer_id": f"CR-{tag}-{i:02d}",
            "credit_limit": str(LIMIT),
            "outstanding_balance": str(OUTSTANDING),
            "allowed_payment_methods": ["credit_terms"],
        }
        for i in range(20)
    ]
    for replica in (2, 3):
        procs.start("review", replica, system)
    try:
        async with bus.producer(bootstrap) as p:
            await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in customers])
        await demo.wait_drained(bootstrap, print, 60, groups=("review",))
        orders = []
        for i in range(500):
            o = sample.order(f"CR-{tag}-{i:04d}", rng, now, customer=customers[i % 20]["customer_id"], lines=1)
            orders.append({**o, "payment_method": "credit_terms"})
        start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
        async with bus.producer(bootstrap) as p:
            await bus.publish(
                p, topics.ORDERS_SUBMITTED, [(f"{o['channel']}:{o['channel_order_ref']}", o) for o in orders]
            )
        keys = {f"{o['channel']}:{o['channel_order_ref']}": o for o in orders}
        seen = await statuses_until(bootstrap, start, dict.fromkeys(keys, SETTLED), timeout=240)
    finally:
        for replica in (2, 3):
            procs.stop("review", replica)
    approved: dict[str, Decimal] = defaultdict(Decimal)
    settled = 0
    for key, o in keys.items():
        names = {m["status"]: m for m in seen.get(key, [])}
        settled += any(s in names for s in SETTLED)
        if "approved" in names:
            approved[o["customer"]["customer_id"]] += Decimal(names["approved"]["details"]["total_amount"])
    assert settled == 500, f"only {settled} of 500 orders were decided"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system["MONGODB_URI"])
    try:
        coll = client[f"{system['MONGODB_DATABASE']}_review"]["review"]
        for c in customers:
            cents, claims = await review_store.exposure(DocStore(coll), c["customer_id"])
            total = Decimal(cents) / 100
            assert total == sum((Decimal(v) for v in claims.values()), Decimal(0)) / 100
            assert total + OUTSTANDING <= LIMIT, f"{c['customer_id']} exposure {total} passes the limit"
            assert total == approved[c["customer_id"]], (c["customer_id"], total, approved[c["customer_id"]])
    finally:
        await client.close()


async def test_replicas_started_after_the_master_data_know_every_customer(system: dict[str, str]) -> None:
    # masterdata.* is split over partitions: a replica started later is given only some of them by the group,
    # and must still know every customer (it reads them all before its first review)
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag, rng, now = uuid.uuid4().hex[:6], random.Random(12), datetime.now(UTC)
    customers = [{**sample.customers()[0], "customer_id": f"LATE-{tag}-{i:02d}"} for i in range(24)]
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in customers])
    await demo.wait_drained(bootstrap, print, 60, groups=("review",))
    for replica in (2, 3):
        procs.start("review", replica, system)
    try:
        orders = [
            sample.order(f"LATE-{tag}-{i:04d}", rng, now, customer=customers[i % 24]["customer_id"], lines=1)
            for i in range(72)
        ]
        start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
        async with bus.producer(bootstrap) as p:
            await bus.publish(
                p, topics.ORDERS_SUBMITTED, [(f"{o['channel']}:{o['channel_order_ref']}", o) for o in orders]
            )
        keys = [f"{o['channel']}:{o['channel_order_ref']}" for o in orders]
        seen = await statuses_until(bootstrap, start, dict.fromkeys(keys, SETTLED), timeout=180)
    finally:
        for replica in (2, 3):
            procs.stop("review", replica)
    decided = {k: [m for m in seen.get(k, []) if m["status"] in SETTLED] for k in keys}
    assert all(decided.values()), f"{sum(not v for v in decided.values())} of 72 orders were never decided"
    unknown = [
        k for k, msgs in decided.items() for m in msgs for r in m.get("reasons") or [] if "customer" in r["code"]
    ]
    assert not unknown, f"orders reviewed without their customer: {unknown[:3]}"
