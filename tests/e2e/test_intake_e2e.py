"""Intake end to end: three replicas, duplicates, incomplete-then-corrected orders, poison messages."""

import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import topics
from orderflow import bus, procs, sample
from tests.e2e.checks import statuses_until

pytestmark = pytest.mark.e2e


def _key(o: dict[str, Any]) -> str:
    return f"{o['channel']}:{o['channel_order_ref']}"


async def test_three_replicas_number_every_order_once(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    for replica in (2, 3):
        procs.start("intake", replica, system)
    try:
        tag, rng, now = uuid.uuid4().hex[:6], random.Random(3), datetime.now(UTC)
        orders = [sample.order(f"I3-{tag}-{i:04d}", rng, now) for i in range(1000)]
        corrected = {_key(o) for i, o in enumerate(orders) if i % 20 == 5}  # 5%
        first: list[tuple[str, Any]] = []
        for i, o in enumerate(orders):
            first.append((_key(o), sample.incomplete(o) if _key(o) in corrected else o))
            if i % 10 == 1:  # 10% exact duplicates
                first.append((_key(o), o))
        start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
        async with bus.producer(bootstrap) as p:
            await bus.publish(p, topics.ORDERS_SUBMITTED, first)
            await bus.publish(
                p, topics.ORDERS_SUBMITTED, [(_key(o), {**o, "revision": 2}) for o in orders if _key(o) in corrected]
            )
        seen = await statuses_until(bootstrap, start, {_key(o): "received" for o in orders}, timeout=300)
    finally:
        for replica in (2, 3):
            procs.stop("intake", replica)
    # a redelivered status keeps its event id; only distinct events count
    received = list({m["event_id"]: m for msgs in seen.values() for m in msgs if m["status"] == "received"}.values())
    numbers = Counter(m["order_number"] for m in received)
    assert len(numbers) == 1000, f"{1000 - len(numbers)} orders were not numbered"
    assert max(numbers.values()) == 1, "an order number was given twice"
    per_order = Counter(_key_of(m) for m in received)
    assert max(per_order.values()) == 1, "an order was received twice"
    for key in corrected:
        unique = {m["event_id"]: m for m in seen[key]}.values()  # a redelivery repeats an event id
        names = [(m["status"], m["revision"]) for m in unique]
        assert names[:2] == [("needs_clarification", 1), ("received", 2)], (key, names)
        assert seen[key][0]["order_number"] is None


def _key_of(m: dict[str, Any]) -> str:
    return f"{m['channel']}:{m['channel_order_ref']}"


async def test_poison_messages_go_to_the_dlq_and_valid_ones_flow(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag, rng, now = uuid.uuid4().hex[:6], random.Random(5), datetime.now(UTC)
    valid = [sample.order(f"PZ-{tag}-{i:03d}", rng, now) for i in range(100)]
    poison: list[bytes] = []
    for i in range(20):
        kind = i % 5
        poison.append(
            [
                f"not json {tag} {i}".encode(),
                f'["{tag}", {i}]'.encode(),
                f'{{"type": "order.unknown", "version": 1, "tag": "{tag}-{i}"}}'.encode(),
                f'{{"type": "order.submitted", "version": 9, "tag": "{tag}-{i}"}}'.encode(),
                b"\xff\xfe" + f"{tag}-{i}".encode(),
            ][kind]
        )
    items: list[tuple[str, Any]] = []
    for i, o in enumerate(valid):
        items.append((_key(o), o))
        if i % 5 == 0:
            items.append((f"poison-{i}", poison[i // 5]))
    dlq_start = await bus.end_offsets(bootstrap, topics.ORDERS_DLQ)
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.ORDERS_SUBMITTED, items)
    seen = await statuses_until(bootstrap, start, {_key(o): "received" for o in valid}, timeout=180)
    assert all(any(m["status"] == "received" for m in seen[_key(o)]) for o in valid)
    dead = [m for m in await bus.read(bootstrap, topics.ORDERS_DLQ, dlq_start) if tag in m.get("payload", "")]
    letters = list({m["event_id"]: m for m in dead}.values())  # a redelivered batch repeats its letters' ids
    assert len(letters) == 20
    assert {m["topic"] for m in letters} == {topics.ORDERS_SUBMITTED}
    assert all(m["reason"] and m["offset"] >= 0 for m in letters)
