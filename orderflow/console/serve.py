"""Running the console: settings, the read model's consumer on the public topics, the producer, uvicorn."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from contracts import topics
from orderflow import bus
from orderflow.console.app import Console, create_app
from orderflow.console.auth import Accounts
from orderflow.console.readmodel import ReadModel, Record
from services.runtime.kafka import client_kwargs
from services.runtime.retry import Backoff
from services.runtime.service import mongo_client
from services.runtime.settings import ServiceSettings

log = structlog.get_logger("console")
READS = (topics.ORDERS_STATUS, topics.ORDERS_SUBMITTED)


class ConsoleSettings(ServiceSettings):
    """The console's settings: the usual server variables plus `CONSOLE_*` (cookies, stuck rule)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    console_secure_cookies: bool = Field(True)  # CONSOLE_SECURE_COOKIES=0 only behind no TLS at all
    console_stuck: str = ""


def database(client: AsyncMongoClient[dict[str, Any]], settings: ServiceSettings) -> Any:
    """The console's own database, `<MONGODB_DATABASE>_console` (orderflow_console by default)."""
    return client[f"{settings.mongodb_database}_console"]


def _records(batch: dict[Any, list[Any]]) -> list[Record]:
    """The JSON objects of a fetched batch (anything else is no message the read model takes)."""
    out = []
    for recs in batch.values():
        for r in recs:
            try:
                value = json.loads(r.value) if r.value is not None else None
            except ValueError:
                continue
            if isinstance(value, dict):
                key = r.key.decode(errors="replace") if r.key else None
                out.append(Record(r.topic, r.partition, r.offset, key, value, r.timestamp))
    return out


async def consume(settings: ServiceSettings, model: ReadModel, stop: asyncio.Event) -> None:
    """Fold `orders.status` and `orders.submitted` into the read model in batches, committing each batch's offsets
    after it is written (a crash replays the batch; the read model skips what it has). A batch the store or
    Kafka refuses is retried with backoff until it goes through: the pages stay up meanwhile, a little behind."""
    consumer = AIOKafkaConsumer(
        *READS,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.group_prefix}console",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        **client_kwargs(settings),
    )
    backoff = Backoff("console", "read_model")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300, max_records=2000)
            records = _records(batch)
            while batch and not stop.is_set():
                try:
                    taken = await model.apply(records) if records else 0
                    await consumer.commit()
                except (PyMongoError, KafkaError) as exc:
                    delay = await backoff.wait("transient")
                    log.warning("read_model_retry", error=type(exc).__name__, retry_in_s=round(delay, 2))
                    continue
                backoff.reset()
                if records:
                    log.info("read_model_batch", records=len(records), new_statuses=taken)
                break
    finally:
        await consumer.stop()


def build(settings: ConsoleSettings, thresholds: dict[str, float]) -> FastAPI:
    """The console application with its lifespan: Mongo, the producer and the read model's consumer."""
    client = mongo_client(settings)
    db = database(client, settings)
    model, accounts = ReadModel(db), Accounts(db)
    producer: list[Any] = []

    async def publish(topic: str, key: str, message: dict[str, Any]) -> None:
        await bus.publish(producer[0], topic, [(key, message)])

    console = Console(model, accounts, publish, thresholds, secure_cookies=settings.console_secure_cookies)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("queue_index_loaded", orders=await model.load())
        stop = asyncio.Event()
        async with bus.producer(settings.kafka_bootstrap_servers, settings) as p:
            producer.append(p)
            task = asyncio.create_task(consume(settings, model, stop))
            task.add_done_callback(_report)
            try:
                yield
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 10)
                await client.close()

    return create_app(console, lifespan)


def _report(task: "asyncio.Task[None]") -> None:
    """Log a read-model consumer that ended with an error (the pages would stop following the topics)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("read_model_stopped", error=type(task.exception()).__name__)


def serve(settings: ConsoleSettings, thresholds: dict[str, float], host: str, port: int) -> None:
    """Serve the console until interrupted (SIGTERM/SIGINT stop it cleanly)."""
    config = uvicorn.Config(build(settings, thresholds), host=host, port=port, access_log=False, log_config=None)
    asyncio.run(uvicorn.Server(config).serve())
