"""Metrics: business counters per published status, FastStream's consume/publish metrics, DLQ and latency,
all on the registry served at /metrics, with no customer data or order identifiers in any label."""

from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import monitoring

from contracts import topics
from contracts.public import STATUSES
from orderflow.dev import stack
from services.runtime.health import HealthServer
from services.runtime.observe import StoreCommands, status_of
from services.runtime.status import status
from tests.factories import key, submitted
from tests.handlers.harness import Harness

SECRETS = ("Wang Privatename", "+86 571 8888 1234", "private.person@example.com", "12 Quiet Alley", "Hiddenville")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _label_values() -> set[str]:
    text = generate_latest(REGISTRY).decode()
    return {v for family in text_string_to_metric_families(text) for s in family.samples for v in s.labels.values()}


def _private(ref: str) -> dict[str, Any]:
    order = submitted(ref)
    order["customer"] = {**order["customer"], "contact_name": SECRETS[0], "phone": SECRETS[1], "email": SECRETS[2]}
    order["ship_to"] = {**order["ship_to"], "recipient": SECRETS[0], "line1": SECRETS[3], "city": SECRETS[4]}
    return order


async def test_counters_move_and_labels_carry_no_customer_data(intake: Harness) -> None:
    received = ("orderflow_orders_total", {"service": "intake", "status": "received"})
    held = ("orderflow_orders_total", {"service": "intake", "status": "needs_clarification"})
    invalid = ("orderflow_orders_total", {"service": "intake", "status": "invalid"})
    dlq = ("orderflow_dead_letters_total", {"service": "intake", "topic": topics.ORDERS_SUBMITTED})
    latency = ("orderflow_handler_seconds_count", {"service": "intake", "type": "order.submitted"})
    consumed = (
        "faststream_received_messages_total",
        {"app_name": "intake", "broker": "kafka", "handler": topics.ORDERS_SUBMITTED},
    )
    statuses = ("orderflow_published_messages_total", {"service": "intake", "topic": topics.ORDERS_STATUS})
    accepted = ("orderflow_published_messages_total", {"service": "intake", "topic": topics.ORDERS_ACCEPTED})
    watched = (received, held, invalid, dlq, latency, consumed, statuses, accepted)
    before = {name + str(labels): _value(name, **labels) for name, labels in watched}

    orders = [_private(f"WEB-MET-{n}") for n in range(3)]
    for order in orders:
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    incomplete = {**_private("WEB-MET-HELD"), "total_amount": "0.01"}
    await intake.send(topics.ORDERS_SUBMITTED, incomplete, key(incomplete))
    hostile = {**_private("WEB-MET-BAD"), "version": 1.0}
    await intake.send(topics.ORDERS_SUBMITTED, hostile, key(hostile))

    moved = {name + str(labels): _value(name, **labels) - before[name + str(labels)] for name, labels in watched}
    assert moved == {
        "orderflow_orders_total" + str(received[1]): 3,
        "orderflow_orders_total" + str(held[1]): 1,
        "orderflow_orders_total" + str(invalid[1]): 1,
        "orderflow_dead_letters_total" + str(dlq[1]): 1,
        "orderflow_handler_seconds_count" + str(latency[1]): 4,
        "faststream_received_messages_total" + str(consumed[1]): 5,
        "orderflow_published_messages_total" + str(statuses[1]): 5,
        "orderflow_published_messages_total" + str(accepted[1]): 3,
    }
    numbers = {m["order_number"] for m in intake.out[topics.ORDERS_STATUS] if m["order_number"]}
    assert len(numbers) == 3
    forbidden = (*SECRETS, *numbers, "WEB-MET", "@")
    leaks = {v for v in _label_values() for word in forbidden if word in v}
    assert not leaks, f"metric labels carry order or customer data: {leaks}"


async def test_metrics_endpoint_serves_the_business_and_faststream_metrics(intake: Harness) -> None:
    order = submitted("WEB-MET-HTTP")
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    port = stack.unused_port()
    server = HealthServer(port, {})
    await server.start()
    try:
        async with httpx.AsyncClient() as http:
            res = await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await server.stop()
    assert res.status_code == 200
    body = res.text
    families = ("orderflow_orders_total", "orderflow_published_messages", "faststream_received_messages_total")
    for family in families:
        assert family in body


def test_status_of_reads_every_contract_status_and_nothing_else() -> None:
    now = datetime.now(UTC)
    for name in STATUSES:
        tricky = 'WEB-"status":"approved"'  # a reference quoting the key is escaped on the wire
        assert status_of(status("c", "web", tricky, name, now, details={"status": "x"}).value) == name
    assert status_of(b'{"type":"order.status","status":"made-up"}') is None
    assert status_of(b'{"type":"shipment.opened"}') is None


async def test_store_commands_are_counted_per_service_and_command() -> None:
    def sent(command: str) -> float:
        return (
            REGISTRY.get_sample_value("orderflow_store_commands_total", {"service": "metrics-test", "command": command})
            or 0.0
        )

    listener = StoreCommands("metrics-test")
    before = sent("find")
    event = monitoring.CommandStartedEvent({"find": "c"}, "db", 1, ("127.0.0.1", 27017), 1)
    listener.started(event)
    listener.started(event)
    assert listener.sent == 2 and sent("find") == before + 2


async def test_store_writes_count_the_documents_each_write_command_names() -> None:
    def written(command: str) -> float:
        labels = {"service": "metrics-writes", "command": command}
        return REGISTRY.get_sample_value("orderflow_store_writes_total", labels) or 0.0

    listener = StoreCommands("metrics-writes")
    where = ("127.0.0.1", 27017)
    commands = [
        {"insert": "c", "documents": [{"_id": 1}, {"_id": 2}, {"_id": 3}]},
        {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$set": {"a": 1}}}] * 2},
        {"delete": "c", "deletes": [{"q": {"_id": 3}, "limit": 1}]},
        {"findAndModify": "c", "query": {"_id": "seq"}, "update": {"$inc": {"n": 1}}},
        {"find": "c", "filter": {}},
    ]
    before = {c: written(c) for c in ("insert", "update", "delete", "findAndModify", "find")}
    for n, command in enumerate(commands):
        listener.started(monitoring.CommandStartedEvent(command, "db", n, where, 1))
    after = {c: written(c) - before[c] for c in before}
    assert after == {"insert": 3, "update": 2, "delete": 1, "findAndModify": 1, "find": 0}
    assert listener.sent == 5
