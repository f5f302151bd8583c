"""Secure mode end to end: its own stack (SASL_SSL + SCRAM-SHA-512 + ACLs on Kafka, TLS + credentials on
FerretDB) on free ports and a throwaway ORDERFLOW_HOME, the four services under their own principals."""

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pymongo import MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from contracts import topics
from orderflow import bus, commands, demo, procs, sample, security, track
from orderflow.dev import stack
from services.runtime.kafka import client_kwargs
from services.runtime.settings import KafkaClientSettings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[dict[str, str]]:
    """A secure stack beside any other, started for this module and removed afterwards; the process
    environment points at it meanwhile and is restored exactly."""
    home = tempfile.mkdtemp(prefix="orderflow-secure-")
    os.chmod(home, 0o755)  # PostgreSQL runs as `postgres` when we are root and must reach its data dir
    saved = dict(os.environ)
    os.environ.update(
        ORDERFLOW_HOME=home,
        ORDERFLOW_SECURE="1",
        ORDERFLOW_FERRETDB_BACKEND="postgresql",
        ORDERFLOW_KAFKA_PORT=str(stack.unused_port(span=2)),
        ORDERFLOW_MONGO_PORT=str(stack.unused_port()),
        ORDERFLOW_PG_PORT=str(stack.unused_port()),
        ORDERFLOW_PROCS_DIR=os.path.join(home, "procs"),
        MONGODB_DATABASE="secure",
        KAFKA_GROUP_PREFIX="",
        LOG_LEVEL="INFO",
    )
    try:
        started = time.monotonic()
        env = stack.up(progress=print)
        print(f"[secure] stack up in {time.monotonic() - started:.1f}s")
        os.environ.update(env)
        yield env
    finally:
        procs.down()
        stack.down(progress=print)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def material(secure_stack: dict[str, str]) -> security.Material:
    """The secure stack's certificates and password files."""
    return security.material(stack.state_dir())


def auth(m: security.Material, principal: str) -> KafkaClientSettings:
    """Client settings of a principal of the secure stack."""
    return security.kafka_auth(m, principal)


@pytest.fixture(scope="module")
def secure_system(secure_stack: dict[str, str], material: security.Material) -> Iterator[dict[str, str]]:
    """The four services, each as its own principal; master data and stock published by the channel
    principal and consumed by review and inventory."""
    bootstrap = secure_stack["KAFKA_BOOTSTRAP_SERVERS"]
    procs.up(1, secure_stack)
    prods = sample.products()

    async def load() -> None:
        async with bus.producer(bootstrap, auth(material, security.CHANNEL)) as p:
            await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in sample.customers()])
            await bus.publish(p, topics.MASTERDATA_PRODUCTS, [(x["sku"], x) for x in prods])
            await bus.publish(
                p, topics.INVENTORY_MOVEMENTS, [(s["sku"], s) for s in sample.stock([x["sku"] for x in prods])]
            )
        # lag is measured with the process environment: the admin principal
        drained = await demo.wait_drained(bootstrap, print, 90, groups=("review", "inventory"))
        crashed = procs.crashed()
        assert not crashed, "\n".join(procs.log_tail(s, r) for s, r in crashed)
        assert drained, "review/inventory did not consume the master data in 90 s"

    asyncio.run(load())
    yield secure_stack


async def test_an_order_from_the_channel_principal_is_reserved(
    secure_system: dict[str, str], material: security.Material
) -> None:
    bootstrap = secure_system["KAFKA_BOOTSTRAP_SERVERS"]
    channel = auth(material, security.CHANNEL)
    order = sample.order(f"SEC-{random.randrange(10**6):06d}", random.Random(8), datetime.now(UTC))
    key = f"{order['channel']}:{order['channel_order_ref']}"
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS, channel)  # read from here: no offset reset
    async with bus.producer(bootstrap, channel) as p:
        await bus.publish(p, topics.ORDERS_SUBMITTED, [(key, order)])
    seen: list[str] = []
    deadline = time.monotonic() + 90
    async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5, auth=channel):
        if msg.get("_key") == key:
            seen.append(msg["status"])
        if "reserved" in seen or time.monotonic() > deadline:
            break
    assert seen[:1] == ["received"], seen
    assert "approved" in seen and "reserved" in seen, seen
    assert not procs.crashed()


async def test_customer_service_tools_work_in_secure_mode(
    secure_system: dict[str, str], material: security.Material
) -> None:
    """`orderflow order` and `orderflow track` take the environment's credentials (here the admin's):
    an order is cancelled through the command and its timeline read over TLS with a password."""
    bootstrap = secure_system["KAFKA_BOOTSTRAP_SERVERS"]
    order = sample.order(f"SEC-CS-{random.randrange(10**6):06d}", random.Random(9), datetime.now(UTC))
    key = f"{order['channel']}:{order['channel_order_ref']}"
    async with bus.producer(bootstrap, auth(material, security.CHANNEL)) as p:
        await bus.publish(p, topics.ORDERS_SUBMITTED, [(key, order)])
    timeline: dict[str, Any] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        timeline = await track.fetch(key)
        if timeline and any(s["status"] == "reserved" for s in timeline["entries"]):
            break
        await asyncio.sleep(1)
    assert timeline is not None and any(s["status"] == "reserved" for s in timeline["entries"]), timeline
    assert await commands.order_key(timeline["order_number"]) == key  # found by number, over TLS
    cancel = commands.build("order.cancel", key, "cs-secure", reason="customer asked")
    answer = await commands.send(bootstrap, cancel, wait=60)
    assert answer is not None and answer["status"] == "cancelled", commands.describe(answer)


async def test_the_services_logs_hold_no_password(secure_system: dict[str, str], material: security.Material) -> None:
    secrets = [security.password(material.kafka_password_file(p)) for p in security.PRINCIPALS]
    secrets.append(security.password(material.mongo_password_file))
    logs = [procs.log_path(s).read_text(errors="replace") for s in procs.SERVICES]
    logs += [stack.log_file(c).read_text(errors="replace") for c in stack.COMPONENTS]
    assert all(logs[: len(procs.SERVICES)]), "a service wrote no log at all"
    assert not [s for s in secrets if any(s in text for text in logs)]


async def test_a_service_cannot_write_a_topic_it_does_not_own(
    secure_stack: dict[str, str], material: security.Material
) -> None:
    bootstrap = secure_stack["KAFKA_BOOTSTRAP_SERVERS"]
    async with bus.producer(bootstrap, auth(material, "intake")) as p:
        await bus.publish(p, topics.ORDERS_ACCEPTED, [("k", {"probe": 1})])  # its own topic: allowed
        for foreign in (topics.INVENTORY_ALLOCATIONS, topics.ORDERS_SUBMITTED, topics.FULFILLMENT_SHIPMENTS):
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(bus.publish(p, foreign, [("k", {"probe": 1})]), 30)
    async with bus.producer(bootstrap, auth(material, security.CHANNEL)) as p:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(bus.publish(p, topics.ORDERS_STATUS, [("k", {"forged": True})]), 30)


async def _consume_as(bootstrap: str, who: KafkaClientSettings, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **client_kwargs(who))
    await consumer.start()
    try:
        for _ in range(10):
            await consumer.getmany(timeout_ms=1000)
    finally:
        await consumer.stop()


async def test_a_service_cannot_read_a_topic_it_does_not_consume(
    secure_stack: dict[str, str], material: security.Material
) -> None:
    bootstrap = secure_stack["KAFKA_BOOTSTRAP_SERVERS"]
    assert topics.INVENTORY_MOVEMENTS not in security.CONSUMES["intake"]
    with pytest.raises(TopicAuthorizationFailedError):
        await asyncio.wait_for(
            _consume_as(bootstrap, auth(material, "intake"), "intake", topics.INVENTORY_MOVEMENTS), 60
        )
    assert topics.ORDERS_SUBMITTED not in security.CONSUMES["review"]
    with pytest.raises(TopicAuthorizationFailedError):
        await asyncio.wait_for(_consume_as(bootstrap, auth(material, "review"), "review", topics.ORDERS_SUBMITTED), 60)


async def test_kafka_refuses_plaintext_and_a_wrong_password(
    secure_stack: dict[str, str], material: security.Material
) -> None:
    bootstrap = secure_stack["KAFKA_BOOTSTRAP_SERVERS"]
    wrong = KafkaClientSettings(
        kafka_sasl_mechanism=security.MECHANISM,
        kafka_sasl_username="intake",
        kafka_sasl_password="not-the-password",
        kafka_ssl_cafile=str(material.ca_cert),
    )
    for kwargs in ({}, client_kwargs(wrong)):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **kwargs)
        try:
            with pytest.raises(KafkaError):
                await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()


def _mongo(uri: str, **kwargs: Any) -> MongoClient[dict[str, Any]]:
    return MongoClient(uri, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000, **kwargs)


def test_ferretdb_serves_tls_with_credentials_only(secure_stack: dict[str, str], material: security.Material) -> None:
    uri = secure_stack["MONGODB_URI"]
    user, secret = security.MONGO_USER, security.password(material.mongo_password_file)
    with _mongo(uri, username=user, password=secret) as client:
        client["secure_probe"]["docs"].insert_one({"_id": "tls", "ok": True})
        assert client["secure_probe"]["docs"].find_one({"_id": "tls"}) == {"_id": "tls", "ok": True}
    tls_only = f"mongodb://{stack.address('ferretdb')}/?tls=true&tlsCAFile={material.ca_cert}"
    with _mongo(tls_only) as client, pytest.raises(OperationFailure):
        client.admin.command("ping")  # no credentials: PostgreSQL refuses FerretDB's connection
    with _mongo(uri, username=user, password="not-the-password") as client, pytest.raises(OperationFailure):
        client.admin.command("ping")
    plaintext = f"mongodb://{stack.address('ferretdb')}/?authMechanism=PLAIN"
    with _mongo(plaintext, username=user, password=secret) as client, pytest.raises(ServerSelectionTimeoutError):
        client.admin.command("ping")
    untrusted = f"mongodb://{stack.address('ferretdb')}/?tls=true&authMechanism=PLAIN"  # system CAs only
    with _mongo(untrusted, username=user, password=secret) as client, pytest.raises(ServerSelectionTimeoutError):
        client.admin.command("ping")
