"""Consumer lag per group, topic and partition: committed offset, log end, lag (no commit = from log start)."""

import os
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderflow import bus
from orderflow.procs import SERVICES
from services.fulfillment.app import CONSUMES as FULFILLMENT
from services.intake.app import CONSUMES as INTAKE
from services.inventory.app import CONSUMES as INVENTORY
from services.review.app import CONSUMES as REVIEW

GROUPS: dict[str, tuple[str, ...]] = dict(zip(SERVICES, (INTAKE, REVIEW, INVENTORY, FULFILLMENT), strict=True))


@dataclass(frozen=True)
class PartitionLag:
    """Lag of one consumer group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int

    @property
    def lag(self) -> int:
        """Messages not yet consumed (from the log start when nothing is committed)."""
        return self.log_end - (self.committed if self.committed is not None else self.log_start)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**asdict(self), "lag": self.lag}


def prefix() -> str:
    """The consumer-group prefix in force (KAFKA_GROUP_PREFIX; empty in production)."""
    return os.environ.get("KAFKA_GROUP_PREFIX", "")


async def measure(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS) -> list[PartitionLag]:
    """Lag of every service group on every partition of the topics it consumes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        rows = []
        for group, names in groups.items():
            committed = await admin.list_consumer_group_offsets(prefix() + group)
            tps = [TopicPartition(t, p) for t in names for p in await bus.partitions(consumer, t)]
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                off = meta.offset if meta is not None and meta.offset >= 0 else None
                rows.append(PartitionLag(group, tp.topic, tp.partition, off, starts[tp], ends[tp]))
        return rows
    finally:
        await consumer.stop()
        await admin.close()


async def total(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS) -> dict[str, int]:
    """Total lag per group."""
    out = {g: 0 for g in groups}
    for row in await measure(bootstrap, groups):
        out[row.group] += row.lag
    return out


async def start_at_end(bootstrap: str, groups: dict[str, tuple[str, ...]] = GROUPS) -> None:
    """Commit every group's offsets at the current end of its topics (new groups then skip the history)."""
    for group, names in groups.items():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=prefix() + group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in names for p in await bus.partitions(consumer, t)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: off for tp, off in ends.items()})
        finally:
            await consumer.stop()
