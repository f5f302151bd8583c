"""Small Kafka helpers for the CLI, demo, simulator and tests: publish JSON, read topics."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.runtime.kafka import client_kwargs
from services.runtime.settings import KafkaClientSettings


@asynccontextmanager
async def producer(bootstrap: str, auth: KafkaClientSettings | None = None) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (idempotent, batched), authenticated as `auth` says (default: the environment)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5, **client_kwargs(auth))
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def publish(p: AIOKafkaProducer, topic: str, items: Iterable[tuple[str, Any]]) -> int:
    """Publish (key, value) pairs; dict values become JSON, bytes go as they are; waits for every ack."""
    futures = []
    for key, value in items:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        futures.append(await p.send(topic, raw, key=key.encode()))
    await asyncio.gather(*futures)
    return len(futures)


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partition numbers of `topic` (fresh cluster metadata; empty when the topic does not exist)."""
    cluster = await consumer._client.fetch_all_metadata()
    return sorted(cluster.partitions_for_topic(topic) or set())


async def end_offsets(bootstrap: str, topic: str, auth: KafkaClientSettings | None = None) -> dict[int, int]:
    """The current end offset of every partition of `topic`."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_kwargs(auth))
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partitions(c, topic)]
        ends = await c.end_offsets(parts)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await c.stop()


async def read(
    bootstrap: str,
    topic: str,
    start: dict[int, int] | None = None,
    idle: float = 1.0,
    auth: KafkaClientSettings | None = None,
) -> list[dict[str, Any]]:
    """Every message of `topic` from `start` (default: beginning) up to its current end, decoded."""
    out: list[dict[str, Any]] = []
    async for rec in follow(bootstrap, topic, start, stop_at_end=True, idle=idle, auth=auth):
        out.append(rec)
    return out


async def follow(
    bootstrap: str,
    topic: str,
    start: dict[int, int] | None = None,
    *,
    stop_at_end: bool = False,
    idle: float = 1.0,
    auth: KafkaClientSettings | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield decoded messages of `topic` (value JSON + _key/_partition/_offset) as they arrive, and an empty
    dict after each idle interval without any."""
    # "earliest": a partition's default offset reset (no group, no position yet) must not land at the end
    # and skip what was just published, should it win over the seek below
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **client_kwargs(auth)
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions(c, topic)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        for tp in tps:
            if start and tp.partition in start:
                c.seek(tp, start[tp.partition])
            else:
                await c.seek_to_beginning(tp)
        while True:
            if stop_at_end and all([await c.position(tp) >= ends[tp] for tp in tps]):
                return
            batch = await c.getmany(timeout_ms=int(idle * 1000), max_records=5000)
            if not batch and not stop_at_end:
                yield {}  # a heartbeat, so callers can check their deadlines while nothing arrives
            for recs in batch.values():
                for r in recs:
                    try:
                        value = json.loads(r.value) if r.value is not None else None
                    except ValueError:
                        value = {"_raw": r.value.decode("utf-8", "replace") if r.value else None}
                    if not isinstance(value, dict):
                        value = {"_raw": value}
                    value.update(
                        _key=r.key.decode() if r.key else None,
                        _partition=r.partition,
                        _offset=r.offset,
                        _timestamp=r.timestamp,
                    )
                    yield value
    finally:
        await c.stop()
