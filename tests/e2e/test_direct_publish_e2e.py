"""A batch's outputs go straight to the started broker's Kafka producer (FastStream's per-message publish path
costs more CPU than the producer itself): they arrive whole, in order per key, and are counted; with tracing on
they go through FastStream, whose middleware carries the trace context."""

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY

from services.runtime import tracing
from services.runtime.batch import publish_pending
from services.runtime.kafka import BrokerPublisher, make_broker
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Outgoing

pytestmark = pytest.mark.e2e

SERVICE = "publish-test"


async def read_back(bootstrap: str, topic: str, count: int) -> list[tuple[str, int]]:
    """The first `count` records of `topic` as (key, n), partition by partition."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[tuple[str, int]] = []
    try:
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(records)} of {count} records arrived"
            for part in batch.values():
                records += [(r.key.decode(), int(r.value.decode())) for r in part if r.key and r.value]
    finally:
        await consumer.stop()
    return records


async def test_outputs_go_straight_to_the_producer_in_order_per_key_and_are_counted(
    servers: dict[str, str], topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = servers["KAFKA_BOOTSTRAP_SERVERS"]
    broker = make_broker(bootstrap, SERVICE)
    publisher = BrokerPublisher(broker)
    await broker.start()
    try:
        # a FastStream that keeps its producer elsewhere would fall back to `broker.publish`: slower, still correct
        assert isinstance(publisher.producer(), AIOKafkaProducer)
        monkeypatch.setattr(tracing, "enabled", lambda: True)
        assert publisher.producer() is None  # traced: through FastStream's telemetry middleware
        monkeypatch.undo()
        labels = {"service": SERVICE, "topic": topic}
        before = REGISTRY.get_sample_value("orderflow_published_messages_total", labels) or 0
        messages = [Outgoing(topic, f"k{n % 4}", str(n).encode()) for n in range(40)]
        await publish_pending(MemoryDocStore(), publisher, SERVICE, [], messages)  # the batch's and relay's path
        assert REGISTRY.get_sample_value("orderflow_published_messages_total", labels) == before + 40
    finally:
        await broker.stop()
    records = await read_back(bootstrap, topic, 40)
    assert sorted(n for _, n in records) == list(range(40))
    for key in ("k0", "k1", "k2", "k3"):
        sent = [n for n in range(40) if f"k{n % 4}" == key]
        assert [n for k, n in records if k == key] == sent, f"{key} out of order"
