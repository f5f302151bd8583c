"""Intake's handler on the in-memory broker and store: numbering, holding, revisions, duplicates, poison."""

import re

import pytest

from contracts import topics
from services.intake import store
from services.runtime.memory import MemoryDocStore
from tests.factories import key, submitted
from tests.handlers.harness import Harness


async def test_complete_order_is_numbered_and_forwarded(intake: Harness) -> None:
    order = submitted("WEB-100")
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    [status] = intake.out[topics.ORDERS_STATUS]
    assert status["status"] == "received"
    assert re.fullmatch(r"SO-\d{8}-\d{6}", status["order_number"])
    [accepted] = intake.out[topics.ORDERS_ACCEPTED]
    assert accepted["order_number"] == status["order_number"]
    assert "customer" not in accepted and "ship_to" not in accepted  # contact data stays in intake
    [shipping] = intake.out[topics.ORDERS_SHIPPING]
    assert shipping["ship_to"]["city"] == "Hangzhou"


async def test_duplicate_delivery_creates_one_order(intake: Harness) -> None:
    order = submitted("WEB-101")
    for _ in range(3):
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    assert intake.statuses() == ["received"]
    assert len(intake.out[topics.ORDERS_ACCEPTED]) == 1


async def test_incomplete_order_is_held_then_completed_by_a_revision(intake: Harness) -> None:
    order = submitted("WEB-102")
    broken = {**order, "ship_to": {**order["ship_to"], "city": None}, "total_amount": "1.00"}
    await intake.send(topics.ORDERS_SUBMITTED, broken, key(order))
    [held] = intake.out[topics.ORDERS_STATUS]
    assert held["status"] == "needs_clarification" and held["order_number"] is None
    assert {r["field"] for r in held["reasons"]} == {"ship_to.city", "total_amount"}
    assert not intake.out[topics.ORDERS_ACCEPTED]
    await intake.send(topics.ORDERS_SUBMITTED, {**order, "revision": 2}, key(order))
    assert intake.statuses() == ["needs_clarification", "received"]
    assert intake.out[topics.ORDERS_STATUS][-1]["revision"] == 2


async def test_stale_revision_is_ignored_with_a_reason(intake: Harness) -> None:
    order = submitted("WEB-103")
    await intake.send(topics.ORDERS_SUBMITTED, {**order, "revision": 3}, key(order))
    await intake.send(topics.ORDERS_SUBMITTED, {**order, "revision": 2}, key(order))
    last = intake.out[topics.ORDERS_STATUS][-1]
    assert [r["code"] for r in last["reasons"]] == ["stale_revision"] and last["details"]["ignored"]
    assert len(intake.out[topics.ORDERS_ACCEPTED]) == 1


async def test_amendment_after_acceptance_keeps_the_number(intake: Harness) -> None:
    order = submitted("WEB-104")
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    await intake.send(topics.ORDERS_SUBMITTED, {**order, "revision": 2}, key(order))
    first, second = intake.out[topics.ORDERS_ACCEPTED]
    assert first["order_number"] == second["order_number"] and second["revision"] == 2


async def test_numbers_are_unique_across_orders(intake: Harness) -> None:
    for i in range(20):
        order = submitted(f"WEB-2{i:02d}")
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    numbers = [s["order_number"] for s in intake.out[topics.ORDERS_STATUS]]
    assert len(set(numbers)) == 20


@pytest.mark.parametrize(
    ("raw", "invalid_status"),
    [
        (b"not json at all", False),
        (b"[1, 2]", False),
        (b'{"type": "order.teleported", "version": 1, "channel": "web", "channel_order_ref": "X-1"}', True),
        (b'{"type": "order.submitted", "version": 2, "channel": "fax", "channel_order_ref": "X-2"}', True),
        (b"\xff\xfe\x00garbage", False),
    ],
)
async def test_unreadable_goes_to_dlq_and_invalid_status(intake: Harness, raw: bytes, invalid_status: bool) -> None:
    await intake.send(topics.ORDERS_SUBMITTED, raw, "poison")
    [letter] = intake.out[topics.ORDERS_DLQ]
    assert letter["topic"] == topics.ORDERS_SUBMITTED and letter["reason"]
    assert intake.statuses() == (["invalid"] if invalid_status else [])
    order = submitted("WEB-105")  # the consumer keeps going
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    assert intake.statuses()[-1] == "received"


async def test_numbers_come_a_block_at_a_time_unique_across_two_replicas(intake: Harness) -> None:
    increments: list[int] = []
    increment = intake.store.increment

    async def counted(key: str, by: int) -> int:
        increments.append(by)
        return await increment(key, by)

    intake.store.increment = counted  # type: ignore[method-assign]
    for i in range(20):  # twenty one-record batches
        order = submitted(f"WEB-3{i:02d}")
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    assert increments == [store.Numbers().block]  # one sequence round trip, not one per batch
    other = store.Numbers(block=5)  # a second replica on the same sequence takes the numbers after the block
    numbers = [s["order_number"] for s in intake.out[topics.ORDERS_STATUS]]  # SO-YYYYMMDD-NNNNNN
    mine, day = [int(n[-6:]) for n in numbers], numbers[0][3:11]
    theirs = [await other.take(intake.store, day, 1) for _ in range(6)]
    assert mine == list(range(1, 21)) and theirs == [65, 66, 67, 68, 69, 70] and increments[1:] == [5, 5]


async def test_a_new_day_starts_its_own_sequence() -> None:
    docs, numbers = MemoryDocStore(), store.Numbers(block=3)
    assert [await numbers.take(docs, "20261203", 1) for _ in range(4)] == [1, 2, 3, 4]
    assert [await numbers.take(docs, "20261204", 1) for _ in range(2)] == [1, 2]
    assert await numbers.take(docs, "20261203", 5) == 7  # the rest of day one's second block was given up
