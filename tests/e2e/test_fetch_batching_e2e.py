"""Batches fill under load on the real broker: the broker holds a service's fetch for its wait, so records that
arrive one by one on different partitions during one wait are handled as one batch, and a record at rest is
still handled within about two waits."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer

from services.runtime.batch import Processor
from services.runtime.kafka import make_broker, subscribe
from services.runtime.messages import Incoming

pytestmark = pytest.mark.e2e

WAIT_MS = 1500


class Recorder:
    """Stands in for a service's processor: keeps each batch it is given, and when it first saw each key."""

    service = "fetch-test"

    def __init__(self) -> None:
        self.batches: list[list[Incoming]] = []
        self.seen: dict[str, float] = {}

    async def process(self, records: list[Incoming]) -> None:
        self.batches.append(records)
        now = time.monotonic()
        for r in records:
            self.seen.setdefault(r.key or "", now)

    def keys(self) -> list[str | None]:
        return [r.key for batch in self.batches for r in batch]


async def arrived(recorder: Recorder, keys: set[str], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if keys <= set(recorder.keys()):
            return True
        await asyncio.sleep(0.05)
    return False


@asynccontextmanager
async def consuming(
    bootstrap: str, name: str, topic: str, fetch: tuple[int, int], poll_ms: int = 0
) -> AsyncIterator[tuple[Recorder, AIOKafkaProducer]]:
    """A recorder subscribed to `topic` as group `name-topic` that has joined its group, and a producer to feed it."""
    recorder = Recorder()
    broker = make_broker(bootstrap, name)
    subscribe(broker, f"{name}-{topic}", [topic], cast(Processor, recorder), 200, fetch=fetch, poll_ms=poll_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await broker.start()
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"joined")
        assert await arrived(recorder, {"joined"}, within=30), "the consumer never joined its group"
        yield recorder, producer
    finally:
        await producer.stop()
        await broker.stop()


async def test_records_of_one_wait_share_a_batch_and_a_record_at_rest_is_not_held(
    servers: dict[str, str], topic: str
) -> None:
    bootstrap = servers["KAFKA_BOOTSTRAP_SERVERS"]
    async with consuming(bootstrap, "fetch-test", topic, fetch=(1_048_576, WAIT_MS)) as (recorder, producer):
        await asyncio.sleep(2 * WAIT_MS / 1000)  # at rest: no fetch has anything to return
        await producer.send_and_wait(topic, b"{}", key=b"at-rest")
        assert await arrived(recorder, {"at-rest"}, within=2 * WAIT_MS / 1000 + 3), "a record at rest was held"
        before = len(recorder.batches)
        keys = {f"burst-{n}" for n in range(24)}
        for key in sorted(keys):  # one by one, 10 ms apart: ~0.25 s, well inside one wait of 1.5 s
            await producer.send_and_wait(topic, b"{}", key=key.encode())
            await asyncio.sleep(0.01)
        assert await arrived(recorder, keys, within=3 * WAIT_MS / 1000 + 5)
        burst = [b for b in recorder.batches[before:] if any(r.key in keys for r in b)]
        partitions = {r.partition for b in burst for r in b}
        assert len(partitions) >= 3  # the keys spread over the topic's partitions
        assert len(burst) <= 2, [len(b) for b in burst]  # a wait boundary may split them once, no more


async def test_with_an_immediate_fetch_and_a_short_poll_a_record_at_rest_is_handled_at_once(
    servers: dict[str, str], topic: str
) -> None:
    """As `bench --growth` runs the timed services: without the short poll, a poll that found nothing is followed
    by FastStream's pause of the poll's length (here 550 ms), and about half of the records below would wait
    out part of it."""
    bootstrap = servers["KAFKA_BOOTSTRAP_SERVERS"]
    async with consuming(bootstrap, "poll-test", topic, fetch=(1, 500), poll_ms=5) as (recorder, producer):
        waits = []
        pauses = (0.31, 0.17, 0.43, 0.23, 0.61, 0.37, 0.53, 0.29, 0.47, 0.13, 0.59, 0.41)  # off any poll's rhythm
        for n, pause in enumerate(pauses):
            await asyncio.sleep(pause)
            sent, key = time.monotonic(), f"probe-{n}"
            await producer.send_and_wait(topic, b"{}", key=key.encode())
            await arrived(recorder, {key}, within=5)
            waits.append(recorder.seen.get(key, sent + 5) - sent)  # when it was handled, not when we looked
        assert max(waits) < 0.2, [round(w * 1000) for w in waits]
