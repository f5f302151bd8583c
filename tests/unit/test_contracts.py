"""The contract models: schemas up to date, money never a float, unreadable input named precisely."""

import json

import pytest

from contracts import topics
from contracts.registry import MODELS, UnreadableMessage, parse
from contracts.schema import SCHEMA_DIR, on_disk, render


def test_json_schemas_are_up_to_date() -> None:
    assert on_disk(SCHEMA_DIR) == render(), "contracts/schemas is stale: run `make schemas`"


def test_every_topic_has_models() -> None:
    assert set(MODELS) == set(topics.ALL)


def test_money_as_float_is_refused() -> None:
    msg = {"type": "product.upserted", "version": 1, "sku": "A", "name": "A", "list_price": 6.8, "currency": "CNY"}
    with pytest.raises(UnreadableMessage, match="decimal string"):
        parse(topics.MASTERDATA_PRODUCTS, json.dumps(msg).encode())


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b"\xff", "not UTF-8"),
        (b'{"type": "x", "version": 1}', "unknown type"),
        (b'{"type": "stock.counted", "version": 2}', "unsupported version"),
        (b'{"type": "stock.counted", "version": 1, "sku": "A"}', "warehouse"),
        (b"[" * 100 + b"]" * 100, "not a JSON object"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper"),
        (None, "empty message"),
    ],
)
def test_unreadable_messages_say_why(raw: bytes | None, fragment: str) -> None:
    with pytest.raises(UnreadableMessage, match=fragment):
        parse(topics.INVENTORY_MOVEMENTS, raw)


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(UnreadableMessage, match="exceeds"):
        parse(topics.ORDERS_SUBMITTED, b" " * 1_000_001)


def test_optional_additions_from_outside_are_tolerated() -> None:
    msg = {"type": "stock.counted", "version": 1, "sku": "A", "warehouse": "W", "on_hand": 3, "new_field": 1}
    assert parse(topics.INVENTORY_MOVEMENTS, json.dumps(msg).encode()).on_hand == 3  # type: ignore[attr-defined]
