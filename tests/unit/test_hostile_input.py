"""Hostile input: each kind is refused with a reason naming what is wrong, and memory stays bounded."""

import gc
import json
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from contracts import topics
from contracts.common import Reason
from contracts.public import MAX_ORDER_LINES, OrderSubmitted
from contracts.registry import UnreadableMessage, parse
from services.intake import handlers as intake_handlers
from services.intake import store as intake_store
from services.intake.checks import check_submission
from services.runtime.batch import Processor
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import Doc
from services.runtime.status import MAX_REASONS, status
from tests.factories import customer, product, submitted
from tests.hostile import Hostile, catalogue

HOSTILE = catalogue("unit")


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_order_is_refused_naming_what_is_wrong(hostile: Hostile) -> None:
    with pytest.raises(UnreadableMessage) as caught:
        parse(topics.ORDERS_SUBMITTED, hostile.value)
    assert hostile.reason in caught.value.reason
    assert len(caught.value.reason) < 600, "a reason quotes a bounded fragment, never the payload"
    assert (caught.value.raw is not None) == hostile.identifiable


def test_an_order_of_exactly_the_line_limit_is_read() -> None:
    order = submitted("WEB-MAXLINES")
    order["lines"] = [{**order["lines"][0], "line_no": n + 1} for n in range(MAX_ORDER_LINES)]
    msg = parse(topics.ORDERS_SUBMITTED, json.dumps(order).encode())
    assert isinstance(msg, OrderSubmitted) and len(msg.lines) == MAX_ORDER_LINES


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("list_price", 6.8, "list_price: Value error, money must be a decimal string such as '12.50', not a float"),
        ("list_price", 7, "list_price: Value error, money must be a decimal string such as '12.50', not int"),
        ("list_price", "1e3", "list_price: Value error, money must be a plain decimal string"),
        ("list_price", "1E+999999999", "list_price: Value error, money must be a plain decimal string"),
        ("list_price", "NaN", "list_price: Value error, money must be a plain decimal string"),
        ("list_price", " 6.80", "list_price: Value error, money must be a plain decimal string"),
        ("list_price", "6.80001", "list_price: Value error, money must be a plain decimal string"),
        ("list_price", "1" * 16, "list_price: Value error, money must be a plain decimal string"),
        ("packaging_options", {"carton": 0.5}, "packaging_options.carton: Value error, money must be a decimal"),
    ],
)
def test_inexact_or_unbounded_money_is_refused_with_the_field_named(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(UnreadableMessage, match=r"product\.upserted does not match the contract") as caught:
        parse(topics.MASTERDATA_PRODUCTS, json.dumps(product(**{field: value})).encode())
    assert fragment in caught.value.reason


@pytest.mark.parametrize("text", ["6.80", "0", "-12.5", "6.1234", "123456789012345.99"])
def test_plain_decimal_money_is_read_exactly(text: str) -> None:
    msg = parse(topics.MASTERDATA_PRODUCTS, json.dumps(product(list_price=text)).encode())
    assert msg.list_price == Decimal(text)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"contract_prices": {"LED-A60-9W": 6.5}}, "contract_prices.LED-A60-9W: Value error, money must be"),
        ({"credit_limit": "1e6"}, "credit_limit: Value error, money must be a plain decimal"),
        ({"max_discount_pct": "NaN"}, "max_discount_pct: Input should be a finite number"),
        ({"max_discount_pct": 150}, "max_discount_pct: Input should be less than or equal to 100"),
    ],
)
def test_customer_master_data_numbers_are_checked(over: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UnreadableMessage) as caught:
        parse(topics.MASTERDATA_CUSTOMERS, json.dumps(customer(**over)).encode())
    assert fragment in caught.value.reason


@pytest.mark.parametrize(
    ("unit_price", "code"),
    [(6.8, "wrong_type"), (7, "wrong_type"), ("1e3", "invalid_format"), ("6.805", "too_many_decimals")],
)
def test_order_money_that_is_not_exact_is_held_with_the_field_named(unit_price: Any, code: str) -> None:
    order = submitted("WEB-MONEY")
    order["lines"] = [{**order["lines"][0], "unit_price": unit_price}]
    checked, reasons = check_submission(OrderSubmitted.model_validate(order))
    assert checked is None
    assert ("lines[0].unit_price", code) in {(r.field, r.code) for r in reasons}


def test_a_status_stays_small_whatever_the_number_of_reasons() -> None:
    reasons = [Reason(code="missing", field=f"lines[{n}].sku", message="x" * 5000) for n in range(7000)]
    out = status("cause", "web", "WEB-1", "needs_clarification", datetime.now(UTC), reasons=reasons)
    sent = json.loads(out.value)
    assert len(sent["reasons"]) == MAX_REASONS and sent["reasons"][-1]["code"] == "more_reasons"
    assert "6951 more problems" in sent["reasons"][-1]["message"]
    assert len(out.value) < 64_000


class _NoStore:
    """A document store with nothing in it (hostile messages never reach a document)."""

    async def load_many(self, keys: Any) -> dict[str, Doc]:
        return {}

    async def save_many(self, docs: Any) -> list[Doc]:
        return []

    async def clear_pending(self, docs: Any) -> None:
        return None

    def remember(self, docs: Any) -> None:
        return None

    def forget(self, docs: Any) -> None:
        return None


class _Discard:
    """A publisher that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_all(self, messages: list[Outgoing]) -> None:
        self.sent += len(messages)


async def test_handling_hostile_messages_retains_no_memory() -> None:
    publisher = _Discard()
    processor = Processor(
        "intake",
        _NoStore(),  # type: ignore[arg-type]
        publisher,
        intake_handlers.routes(intake_store.Numbers()),
        lambda msg, rec: [],
        intake_handlers.on_unreadable,
    )
    values = [h.value for h in HOSTILE]

    async def handle_200(first_offset: int) -> None:
        for n in range(200):
            rec = Incoming(topics.ORDERS_SUBMITTED, 0, first_offset + n, f"web:HOSTILE-{n}", values[n % len(values)])
            await processor.process([rec])

    await handle_200(0)  # warm-up: caches, metric label children, interned strings
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        await handle_200(0)
        await handle_200(10_000)
        gc.collect()
        after = tracemalloc.take_snapshot()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert publisher.sent >= 3 * 200, "every hostile message was dead-lettered"
    assert grown < 100_000, f"{grown} bytes retained after handling 400 hostile messages"
    assert peak < 40_000_000, f"peak {peak} bytes while handling one hostile message at a time"
