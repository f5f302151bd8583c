"""Start-up of one service process: logging, Mongo, topics, broker, subscriber, graceful stop."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from faststream import FastStream
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection

from services.runtime import logging as runtime_logging
from services.runtime import observe, tracing
from services.runtime.batch import Processor, Publisher
from services.runtime.health import HealthServer
from services.runtime.kafka import BrokerPublisher, TopicMismatch, ensure_topics, make_broker, subscribe
from services.runtime.outbox import DocStore, Store
from services.runtime.relay import Relay
from services.runtime.settings import ServiceSettings

Collection = AsyncCollection[dict[str, Any]]
BuildProcessor = Callable[[Store, Publisher], Processor]
Setup = Callable[[Collection], Awaitable[None]]


def mongo_client(
    settings: ServiceSettings, listeners: Sequence[monitoring.CommandListener] = ()
) -> AsyncMongoClient[dict[str, Any]]:
    """The service's async MongoDB client (pymongo's asyncio API, Motor's successor); TLS options come with
    the URI, credentials with it or with MONGODB_USERNAME and MONGODB_PASSWORD(_FILE)."""
    return AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        event_listeners=list(listeners),
        **settings.mongo_credentials(),
    )


def wire(
    name: str,
    settings: ServiceSettings,
    store: Store,
    consumes: Sequence[str],
    build: BuildProcessor,
) -> tuple[KafkaBroker, Processor]:
    """The broker with the service's batch subscriber on `consumes`, and its processor over `store` (a DocStore
    on the service's collection, or a MemoryDocStore in tests)."""
    broker = make_broker(settings.kafka_bootstrap_servers, name, settings.linger_ms, auth=settings)
    broker.add_middleware(observe.prometheus_middleware(name))
    if tracing.enabled():
        broker.add_middleware(tracing.middleware())
    processor = build(store, BrokerPublisher(broker))
    subscribe(
        broker,
        settings.group_prefix + name,
        consumes,
        processor,
        settings.max_batch,
        fetch=(settings.fetch_min_bytes, settings.fetch_max_wait_ms),
        poll_ms=settings.poll_ms,
    )
    return broker, processor


def doc_store(collection: Collection) -> DocStore:
    """The per-key document store on a service's collection."""
    return DocStore(collection)


async def run(
    name: str,
    settings: ServiceSettings,
    consumes: Sequence[str],
    build: BuildProcessor,
    setup: Setup | None = None,
) -> None:
    """Run the service until SIGTERM/SIGINT; in-flight batches finish and commit before it stops."""
    tracing.configure(name)  # before logging: log lines then carry trace_id and span_id
    runtime_logging.configure(name, settings.log_format, settings.log_level)
    log = structlog.get_logger()
    commands = observe.StoreCommands(name)
    client = mongo_client(settings, [commands])
    collection = client[f"{settings.mongodb_database}_{name}"][name]
    if setup is not None:
        await setup(collection)
    try:
        await ensure_topics(settings.kafka_bootstrap_servers, layout=settings, auth=settings)
    except TopicMismatch as exc:  # a cluster weaker than configured: never run on it
        log.error("refusing_to_start", reason=str(exc))
        await client.close()
        raise SystemExit(f"{name}: {exc}") from None
    store = doc_store(collection)
    await store.setup()
    broker, processor = wire(name, settings, store, consumes, build)
    processor.store_commands = lambda: commands.sent
    relay = Relay(name, store, processor.publisher)

    async def mongo_ok() -> bool:
        return bool((await client.admin.command("ping")).get("ok"))

    async def kafka_ok() -> bool:
        return bool(await broker.ping(timeout=2.0))

    probes = HealthServer(settings.health_port, {"mongo": mongo_ok, "kafka": kafka_ok}, name)
    await probes.start()
    log.info("starting", consumes=list(consumes), health_port=settings.health_port)
    try:
        app = FastStream(broker)
        app.after_startup(relay.start)  # publishes through the started broker
        app.on_shutdown(relay.stop)
        await app.run()
    finally:
        await probes.stop()
        await client.close()
        tracing.shutdown()
        log.info("stopped")


def main(coro: Awaitable[None]) -> None:
    """Entry point helper for `python -m services.<name>.app`."""
    asyncio.run(coro)  # type: ignore[arg-type]
