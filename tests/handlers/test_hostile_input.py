"""Hostile messages interleaved with valid ones: the consumer keeps going, every valid order is numbered,
every hostile one is dead-lettered exactly once with its reason (and answered `invalid` when identifiable)."""

import json
from collections import Counter

from contracts import topics
from tests.factories import key, submitted
from tests.handlers.harness import Harness
from tests.hostile import catalogue


async def test_hostile_messages_between_valid_orders(intake: Harness) -> None:
    hostile = catalogue("handler")
    valid = [submitted(f"WEB-HV-{n:02d}") for n in range(len(hostile) + 1)]
    for n, order in enumerate(valid):
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
        if n < len(hostile):
            await intake.send(topics.ORDERS_SUBMITTED, hostile[n].value, f"web:HOSTILE-{n}")

    received = {m["channel_order_ref"] for m in intake.out[topics.ORDERS_STATUS] if m["status"] == "received"}
    assert received == {o["channel_order_ref"] for o in valid}, "every valid order was numbered"

    letters = intake.out[topics.ORDERS_DLQ]
    assert Counter(letter["key"] for letter in letters) == {f"web:HOSTILE-{n}": 1 for n in range(len(hostile))}
    for n, case in enumerate(hostile):
        [letter] = [letter for letter in letters if letter["key"] == f"web:HOSTILE-{n}"]
        assert case.reason in letter["reason"], case.name
        assert len(letter["payload"]) <= 10_000, "a dead letter keeps a bounded excerpt of the payload"

    invalid = [m for m in intake.out[topics.ORDERS_STATUS] if m["status"] == "invalid"]
    assert len(invalid) == sum(case.identifiable for case in hostile)
    for status in invalid:
        [why] = status["reasons"]
        assert why["code"] == "unreadable" and why["message"], status
    assert all(len(json.dumps(m)) < 64_000 for m in intake.out[topics.ORDERS_STATUS])


async def test_money_sent_as_a_float_is_held_naming_the_fields(intake: Harness) -> None:
    order = submitted("WEB-HV-FLOAT")
    order["lines"] = [{**order["lines"][0], "unit_price": 6.8, "quantity": 200}]
    order["total_amount"] = 1360.0
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    [held] = intake.out[topics.ORDERS_STATUS]
    assert held["status"] == "needs_clarification"
    assert {(r["field"], r["code"]) for r in held["reasons"]} == {
        ("lines[0].unit_price", "wrong_type"),
        ("total_amount", "wrong_type"),
    }


async def test_a_1000_line_order_of_garbage_gets_a_small_answer(intake: Harness) -> None:
    order = {**submitted("WEB-HV-GARBAGE"), "lines": [{}] * 1000}
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    [held] = intake.out[topics.ORDERS_STATUS]
    assert held["status"] == "needs_clarification" and len(held["reasons"]) == 50
    assert held["reasons"][-1]["code"] == "more_reasons"
