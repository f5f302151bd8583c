"""The master data review reads for every order (customers, products), held in memory by every replica.

`masterdata.*` are compacted topics keyed by customer id / SKU, split over partitions, and each replica of
review's consumer group is given only some of them. So every replica also reads both topics in full, from the
beginning and without a group (`follow`), and reviews no order before it has caught up with the end offsets
it found at start (`MasterData.ready`); afterwards it keeps following. The group's own handlers apply what
they consume too (the same record twice is harmless: per key, a record older than the one applied is
ignored), and keep storing each record in review's collection as the durable copy.
"""

import asyncio
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from contracts import topics
from contracts.public import CustomerUpserted, ProductUpserted
from contracts.registry import UnreadableMessage, parse
from services.runtime.kafka import client_kwargs
from services.runtime.retry import Backoff
from services.runtime.settings import KafkaClientSettings

log = structlog.get_logger()

TOPICS = (topics.MASTERDATA_CUSTOMERS, topics.MASTERDATA_PRODUCTS)


@dataclass
class MasterData:
    """The latest customer and product records this process has read, per key; `ready` once the records that
    existed when the process started have all been read (set at once when nothing follows the topics: tests)."""

    customers: dict[str, CustomerUpserted] = field(default_factory=dict)
    products: dict[str, ProductUpserted] = field(default_factory=dict)
    applied: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def fed_by_handlers(cls) -> "MasterData":
        """Master data fed only by the group's handlers (handler tests: one process sees every partition)."""
        memory = cls()
        memory.ready.set()
        return memory

    def apply(self, topic: str, partition: int, offset: int, record: CustomerUpserted | ProductUpserted) -> bool:
        """Keep `record` unless a later record of its key (same partition, higher offset) was applied already."""
        key = (topic, record.customer_id if isinstance(record, CustomerUpserted) else record.sku)
        last = self.applied.get(key)
        if last is not None and last[0] == partition and last[1] > offset:
            return False
        self.applied[key] = (partition, offset)
        if isinstance(record, CustomerUpserted):
            self.customers[record.customer_id] = record
        else:
            self.products[record.sku] = record
        return True


async def follow(memory: MasterData, bootstrap: str, auth: KafkaClientSettings, idle_ms: int = 1000) -> None:
    """Read every partition of `masterdata.*` from the beginning into `memory`, without a consumer group; set
    `memory.ready` once caught up with the end offsets found at start, then keep reading. Broker errors are
    retried with the runtime's backoff; unreadable records are skipped (the group's handlers dead-letter them)."""
    backoff = Backoff("review", "masterdata")
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **client_kwargs(auth)
        )
        try:
            await consumer.start()
            cluster = await consumer._client.fetch_all_metadata()
            parts = [TopicPartition(t, p) for t in TOPICS for p in sorted(cluster.partitions_for_topic(t) or ())]
            if {tp.topic for tp in parts} != set(TOPICS):
                raise KafkaError(f"topics {', '.join(TOPICS)} do not all exist yet")
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            while True:
                if not memory.ready.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in parts]):
                    memory.ready.set()
                    log.info("masterdata_ready", customers=len(memory.customers), products=len(memory.products))
                for recs in (await consumer.getmany(timeout_ms=idle_ms, max_records=5000)).values():
                    for r in recs:
                        try:
                            msg = parse(r.topic, r.value)
                        except UnreadableMessage:
                            continue
                        if isinstance(msg, CustomerUpserted | ProductUpserted):
                            memory.apply(r.topic, r.partition, r.offset, msg)
                backoff.reset()
        except (KafkaError, OSError) as exc:
            log.warning("masterdata_retry", error=f"{type(exc).__name__}: {exc}")
            await backoff.wait("transient")
        finally:
            await consumer.stop()
