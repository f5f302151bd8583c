"""Consumer lag per group, topic and partition: committed offset, log start and end, lag (no commit = from
log start) and the age of the oldest unconsumed message."""

import asyncio
import os
import time
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderflow import bus
from orderflow.procs import SERVICES
from services.fulfillment.app import CONSUMES as FULFILLMENT
from services.intake.app import CONSUMES as INTAKE
from services.inventory.app import CONSUMES as INVENTORY
from services.review.app import CONSUMES as REVIEW
from services.runtime.kafka import client_kwargs

GROUPS: dict[str, tuple[str, ...]] = dict(zip(SERVICES, (INTAKE, REVIEW, INVENTORY, FULFILLMENT), strict=True))
AGE_FETCH_SECONDS = 3.0  # how long to wait for the oldest unconsumed records of one group


@dataclass(frozen=True)
class PartitionLag:
    """Lag of one consumer group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int
    oldest_age_s: float | None = None  # seconds since the oldest unconsumed record was produced; 0 without lag

    @property
    def position(self) -> int:
        """Where the group resumes: its commit, or the log start when it has none or its commit was deleted."""
        return self.log_start if self.committed is None else max(self.committed, self.log_start)

    @property
    def lag(self) -> int:
        """Messages not yet consumed (from the log start when nothing is committed)."""
        return max(0, self.log_end - self.position)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**asdict(self), "lag": self.lag}


def prefix() -> str:
    """The consumer-group prefix in force (KAFKA_GROUP_PREFIX; empty in production)."""
    return os.environ.get("KAFKA_GROUP_PREFIX", "")


def format_age(seconds: float | None) -> str:
    """A short human age: '-' when unknown, '0' when nothing waits, else like 850ms, 12.5s, 7m, 3.2h, 2.0d."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


class LagMeter:
    """Reusable admin and consumer connections for repeated lag measurements (the dashboard's refresh)."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs())

    async def __aenter__(self) -> "LagMeter":
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def log_ends(self, names: tuple[str, ...]) -> dict[TopicPartition, tuple[int, int]]:
        """(log start, log end) of every partition of the given topics."""
        tps = [TopicPartition(t, p) for t in names for p in await bus.partitions(self.consumer, t)]
        if not tps:
            return {}
        ends = await self.consumer.end_offsets(tps)
        starts = await self.consumer.beginning_offsets(tps)
        return {tp: (starts[tp], ends[tp]) for tp in tps}

    async def members(self, group: str) -> tuple[str, int]:
        """The group's state (e.g. Stable, PreparingRebalance) and how many consumers it has."""
        [response] = await self.admin.describe_consumer_groups([prefix() + group])
        [described] = response.groups
        return described[2], len(described[5])

    async def measure(self, groups: dict[str, tuple[str, ...]] = GROUPS, ages: bool = True) -> list[PartitionLag]:
        """Lag of every group on every partition of the topics it consumes; with `ages`, also the age of the
        oldest unconsumed record (one fetch per lagging partition)."""
        rows = []
        for group, names in groups.items():
            committed = await self.admin.list_consumer_group_offsets(prefix() + group)
            for tp, (start, end) in (await self.log_ends(names)).items():
                meta = committed.get(tp)
                off = meta.offset if meta is not None and meta.offset >= 0 else None
                rows.append(PartitionLag(group, tp.topic, tp.partition, off, start, end))
        if not ages:
            return rows
        out = []
        for group in groups:
            mine = [r for r in rows if r.group == group]
            lagging = {TopicPartition(r.topic, r.partition): r.position for r in mine if r.lag}
            stamps = await self._oldest_timestamps(lagging)
            now_ms = time.time() * 1000
            for r in mine:
                ts = stamps.get(TopicPartition(r.topic, r.partition))
                age = 0.0 if r.lag == 0 else (None if ts is None else round(max(0.0, now_ms - ts) / 1000, 3))
                out.append(replace(r, oldest_age_s=age))
        return out

    async def _oldest_timestamps(self, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The timestamp (ms) of the first record at or after each position, where one arrives in time."""
        if not positions:
            return {}
        self.consumer.assign(list(positions))
        for tp, pos in positions.items():
            self.consumer.seek(tp, pos)
        found: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + AGE_FETCH_SECONDS
        while len(found) < len(positions) and time.monotonic() < deadline:
            batch = await self.consumer.getmany(*[tp for tp in positions if tp not in found], timeout_ms=200)
            for tp, recs in batch.items():
                if recs and tp not in found:
                    found[tp] = recs[0].timestamp
                    self.consumer.pause(tp)
        self.consumer.assign([])
        return found


async def measure(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS, ages: bool = True) -> list[PartitionLag]:
    """Lag of every service group on every partition of the topics it consumes (see LagMeter.measure)."""
    async with LagMeter(bootstrap) as meter:
        return await meter.measure(groups, ages)


async def total(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS) -> dict[str, int]:
    """Total lag per group."""
    out = {g: 0 for g in groups}
    for row in await measure(bootstrap, groups, ages=False):
        out[row.group] += row.lag
    return out


async def _known_partitions(
    consumer: AIOKafkaConsumer, names: tuple[str, ...], wait: float = 10.0
) -> list[TopicPartition]:
    """The partitions of `names`, waiting up to `wait` seconds for topics just created to reach the metadata."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = {t: await bus.partitions(consumer, t) for t in names}
        if all(found.values()) or asyncio.get_running_loop().time() > deadline:
            return [TopicPartition(t, p) for t, parts in found.items() for p in parts]
        await asyncio.sleep(0.5)


async def start_at_end(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS) -> None:
    """Commit every group's offsets at the current end of its topics (new groups then skip the history)."""
    for group, names in groups.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=prefix() + group, enable_auto_commit=False, **client_kwargs()
        )
        await consumer.start()
        try:
            tps = await _known_partitions(consumer, names)
            if not tps:
                continue  # none of the topics exists yet: the group has no history to skip
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: off for tp, off in ends.items()})
        finally:
            await consumer.stop()
