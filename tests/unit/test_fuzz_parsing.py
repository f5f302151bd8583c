"""Fuzzing `parse` on every topic of the registry: it returns a message of the topic or raises
UnreadableMessage, never anything else, never hangs, and whatever it accepts can be written back out."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts import topics
from contracts.internal import StockShipped
from contracts.public import (
    DeadLetter,
    InvoiceLine,
    InvoiceRequested,
    ProductionRequested,
    ShipmentLine,
    ShipmentOpened,
)
from contracts.registry import MODELS, UnreadableMessage, parse
from services.runtime.status import status
from tests.examples import examples
from tests.factories import command, customer, product, submitted
from tests.handlers import events

NOW = datetime(2026, 11, 27, 8, 15, tzinfo=UTC)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


SAMPLES: dict[str, list[bytes]] = {
    topics.ORDERS_SUBMITTED: [_json(submitted("WEB-FUZZ"))],
    topics.ORDERS_COMMANDS: [
        _json(command("order.cancel", reason="customer asked")),
        _json(command("order.review-decision", decision="approve", reasons=["ok"])),
        _json(command("order.shortage-decision", choice="substitute", substitute_sku="SKU-0002")),
        _json(command("order.priority-approval", approved=False)),
    ],
    topics.MASTERDATA_CUSTOMERS: [_json(customer(contract_prices={"SKU-0001": "9.50"}))],
    topics.MASTERDATA_PRODUCTS: [_json(product(packaging_options={"export_carton": "0.50"}))],
    topics.INVENTORY_MOVEMENTS: [
        _json({"type": "stock.counted", "version": 1, "sku": "SKU-0001", "warehouse": "WH-EAST", "on_hand": 5}),
        _json(
            {
                "type": "purchase-order.updated",
                "version": 1,
                "po_number": "PO-1",
                "sku": "SKU-0001",
                "warehouse": "WH-EAST",
                "quantity": 10,
                "eta": "2026-12-01",
                "status": "open",
            }
        ),
    ],
    topics.FULFILLMENT_EVENTS: [
        _json(
            {
                "type": "shipment.delivered",
                "version": 1,
                "shipment_id": "SH-1",
                "order_number": "SO-20261127-000001",
                "signed_by": "Li Wei",
                "delivered_at": NOW.isoformat(),
            }
        )
    ],
    topics.ORDERS_STATUS: [status("c", "web", "WEB-1", "received", NOW, revision=1, order_number="SO-1").value],
    topics.FULFILLMENT_SHIPMENTS: [
        events.wire(
            ShipmentOpened(
                event_id="e1",
                shipment_id="SH-1",
                order_number="SO-1",
                channel="web",
                channel_order_ref="WEB-1",
                warehouse="WH-EAST",
                lines=[ShipmentLine(line_no=1, sku="SKU-0001", quantity=2)],
                ship_to=events.shipping("WEB-1").ship_to,
            )
        )
    ],
    topics.SUPPLY_INSTRUCTIONS: [
        events.wire(
            ProductionRequested(
                event_id="e2",
                production_request_id="PR-1",
                order_number="SO-1",
                sku="SIGN",
                quantity=2,
                needed_by=NOW.date(),
            )
        )
    ],
    topics.FINANCE_INVOICE_REQUESTS: [
        events.wire(
            InvoiceRequested(
                event_id="e3",
                order_number="SO-1",
                customer_id="C-1001",
                currency="CNY",
                lines=[InvoiceLine(sku="SKU-0001", quantity=2, unit_price="6.80", amount="13.60")],  # type: ignore[arg-type]
                total_amount="13.60",  # type: ignore[arg-type]
                delivered_at=NOW,
            )
        )
    ],
    topics.ORDERS_DLQ: [
        events.wire(
            DeadLetter(
                event_id="e4",
                reason="not JSON",
                service="intake",
                topic=topics.ORDERS_SUBMITTED,
                partition=0,
                offset=1,
                payload="{",
                occurred_at=NOW,
            )
        )
    ],
    topics.ORDERS_ACCEPTED: [events.wire(events.accepted("WEB-1"))],
    topics.ORDERS_SHIPPING: [events.wire(events.shipping("WEB-1"))],
    topics.ORDERS_APPROVED: [events.wire(events.approved("WEB-1"))],
    topics.ORDERS_CANCELLED: [events.wire(events.cancelled("WEB-1"))],
    topics.INVENTORY_ALLOCATIONS: [
        events.wire(events.reserved("WEB-1", {"WH-EAST": [("SKU-0001", 2, "11.00")]})),
        events.wire(events.supply_needed("WEB-1", "production")),
    ],
    topics.FULFILLMENT_DISPATCHED: [
        events.wire(
            StockShipped(
                event_id="e5",
                order_key="web:WEB-1",
                order_number="SO-1",
                channel="web",
                channel_order_ref="WEB-1",
                revision=1,
                shipment_id="SH-1",
                warehouse="WH-EAST",
                lines=[ShipmentLine(line_no=1, sku="SKU-0001", quantity=2)],
            )
        )
    ],
}
TOPICS = sorted(MODELS)
FUZZ = settings(
    max_examples=examples(120),
    deadline=2000,  # milliseconds per example: a pathological input would blow far past it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1", "1.00", "1e3", "NaN", "web", "order.submitted", "2026-11-27", "SO-1", "\x00", "\ud800"]),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


def _accepts_or_refuses(topic: str, value: bytes) -> None:
    """The one property: a message of the topic that can be written back out, or UnreadableMessage."""
    try:
        msg = parse(topic, value)
    except UnreadableMessage as exc:
        assert exc.reason
        return
    assert isinstance(msg, BaseModel) and type(msg) in MODELS[topic]
    msg.model_dump_json().encode("utf-8")


def _encode(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8", "surrogatepass")


def test_every_topic_has_valid_samples() -> None:
    assert set(SAMPLES) == set(MODELS), "add a valid sample for each topic of the registry"
    for topic, samples in SAMPLES.items():
        for sample in samples:
            assert type(parse(topic, sample)) in MODELS[topic]


@pytest.mark.timeout(60)
@FUZZ
@given(topic=st.sampled_from(TOPICS), value=st.binary(max_size=600))
def test_random_bytes(topic: str, value: bytes) -> None:
    _accepts_or_refuses(topic, value)


@pytest.mark.timeout(60)
@FUZZ
@given(topic=st.sampled_from(TOPICS), value=json_values)
def test_random_json(topic: str, value: Any) -> None:
    _accepts_or_refuses(topic, _encode(value))


@pytest.mark.timeout(60)
@FUZZ
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_random_objects_of_the_topics_types(data: st.DataObject, topic: str) -> None:
    kinds = [str(m.model_fields["type"].annotation.__args__[0]) for m in MODELS[topic]]  # type: ignore[union-attr]
    fields = data.draw(st.dictionaries(st.text(max_size=20), json_values, max_size=8))
    _accepts_or_refuses(topic, _encode({**fields, "type": data.draw(st.sampled_from(kinds)), "version": 1}))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a decoded JSON document."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _replace(doc: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        copy = dict(doc)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(doc[head], rest, new, delete)
        return copy
    items = list(doc)
    if delete and not rest:
        del items[head]
    else:
        items[head] = _replace(items[head], rest, new, delete)
    return items


@pytest.mark.timeout(60)
@FUZZ
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_mutated_valid_messages(data: st.DataObject, topic: str) -> None:
    doc = json.loads(data.draw(st.sampled_from(SAMPLES[topic])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        doc = _replace(doc, path, data.draw(json_values), delete=bool(path) and data.draw(st.booleans()))
    _accepts_or_refuses(topic, _encode(doc))


@pytest.mark.timeout(60)
@FUZZ
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_byte_mutations_of_valid_messages(data: st.DataObject, topic: str) -> None:
    raw = bytearray(data.draw(st.sampled_from(SAMPLES[topic])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del raw[at : at + data.draw(st.integers(min_value=1, max_value=8))]
        elif action == "truncate":
            del raw[at:]
    _accepts_or_refuses(topic, bytes(raw))
