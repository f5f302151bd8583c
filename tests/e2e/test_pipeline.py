"""End to end on the real Kafka + FerretDB through the public topics, with real service processes."""

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import topics
from orderflow import bus, procs, sample
from tests.e2e.checks import statuses_until, transitions

pytestmark = pytest.mark.e2e


def workload(n: int, tag: str) -> list[tuple[dict[str, Any], str]]:
    """n orders: most complete (-> reserved), every 10th incomplete, every 15th from a blocked customer."""
    rng, now, out = random.Random(tag), datetime.now(UTC), []
    for i in range(n):
        o = sample.order(f"E2E-{tag}-{i:04d}", rng, now)
        if i % 10 == 3:
            out.append((sample.incomplete(o), "needs_clarification"))
        elif i % 15 == 7:
            out.append(({**o, "customer": {**o["customer"], "customer_id": "C-9999"}}, "rejected"))
        else:
            out.append((o, "reserved"))
    return out


async def publish(bootstrap: str, orders: list[tuple[dict[str, Any], str]]) -> None:
    async with bus.producer(bootstrap) as p:
        await bus.publish(
            p, topics.ORDERS_SUBMITTED, [(f"{o['channel']}:{o['channel_order_ref']}", o) for o, _ in orders]
        )


def assert_each_once(orders: list[tuple[dict[str, Any], str]], seen: dict[str, list[dict[str, Any]]]) -> None:
    expected = {f"{o['channel']}:{o['channel_order_ref']}": want for o, want in orders}
    reached = {k: [m["status"] for m in seen.get(k, [])] for k in expected}
    missing = {k: v for k, v in reached.items() if expected[k] not in v}
    assert not missing, f"{len(missing)} orders did not reach their status, e.g. {list(missing.items())[:3]}"
    for key, msgs in seen.items():
        dup = {t: ids for t, ids in transitions(msgs).items() if len(ids) > 1}
        assert not dup, f"{key}: a transition published under several event ids: {dup}"
    received = {m["event_id"]: m for msgs in seen.values() for m in msgs if m["status"] == "received"}
    numbers = Counter(m["order_number"] for m in received.values())
    assert all(c == 1 for c in numbers.values()), "an order number was given twice"
    per_order = {k: {m["order_number"] for m in msgs if m["order_number"]} for k, msgs in seen.items()}
    assert all(len(v) <= 1 for v in per_order.values()), "an order got two numbers"
    assert sum(1 for want in expected.values() if want != "needs_clarification") == len(numbers)


async def test_200_orders_each_reach_their_status_exactly_once(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    orders = workload(200, uuid.uuid4().hex[:6])
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    await publish(bootstrap, orders)
    expected = {f"{o['channel']}:{o['channel_order_ref']}": want for o, want in orders}
    seen = await statuses_until(bootstrap, start, expected, timeout=90)
    assert_each_once(orders, seen)
    for key, want in expected.items():
        unique = {m["event_id"]: m for m in seen[key]}.values()  # a redelivery repeats an event id
        names = [m["status"] for m in unique if not (m.get("details") or {}).get("ignored")]
        if want == "reserved":
            assert names == ["received", "approved", "reserved"], (key, names)


@pytest.mark.parametrize("victim", ["intake", "review", "inventory", "fulfillment"])
async def test_sigkill_mid_stream_loses_and_duplicates_nothing(system: dict[str, str], victim: str) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    orders = workload(150, uuid.uuid4().hex[:6])
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    await publish(bootstrap, orders[:75])
    await asyncio.sleep(1.5)
    procs.kill(victim)
    await publish(bootstrap, orders[75:])
    await asyncio.sleep(3)
    procs.start(victim, 1, system)
    expected = {f"{o['channel']}:{o['channel_order_ref']}": want for o, want in orders}
    seen = await statuses_until(bootstrap, start, expected, timeout=90)
    assert_each_once(orders, seen)
