"""Kafka wiring shared by the services: broker, topics, the batch subscriber and the publisher."""

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from contracts import topics
from services.runtime.batch import TRANSIENT, Processor
from services.runtime.logging import BrokerLog, scrub
from services.runtime.messages import Incoming, Outgoing
from services.runtime.settings import KafkaClientSettings

log = structlog.get_logger()
PARTITIONS = 6


_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


def _ssl_context(auth: KafkaClientSettings) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=auth.kafka_ssl_cafile) if auth.kafka_ssl_cafile else None


def _mechanism(auth: KafkaClientSettings) -> str:
    mechanism = auth.kafka_sasl_mechanism.strip().upper()
    if mechanism and mechanism not in _SASL:
        raise ValueError(f"KAFKA_SASL_MECHANISM={mechanism!r}; expected one of {', '.join(_SASL)}")
    return mechanism


def broker_security(auth: KafkaClientSettings | None = None) -> BaseSecurity | None:
    """FastStream's security for the settings (default: from the environment); None means PLAINTEXT."""
    auth = auth or KafkaClientSettings()
    context, mechanism = _ssl_context(auth), _mechanism(auth)
    if not mechanism:
        return BaseSecurity(ssl_context=context) if context else None
    return _SASL[mechanism](auth.kafka_sasl_username, auth.kafka_password(), ssl_context=context)


def client_kwargs(auth: KafkaClientSettings | None = None) -> dict[str, Any]:
    """aiokafka's security arguments for the settings (default: from the environment); empty for PLAINTEXT."""
    auth = auth or KafkaClientSettings()
    context, mechanism = _ssl_context(auth), _mechanism(auth)
    kwargs: dict[str, Any] = {"security_protocol": "SSL", "ssl_context": context} if context else {}
    if mechanism:
        kwargs |= {
            "security_protocol": "SASL_SSL" if context else "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": auth.kafka_sasl_username,
            "sasl_plain_password": auth.kafka_password(),
        }
    return kwargs


def make_broker(
    bootstrap: str, client_id: str, linger_ms: int = 5, auth: KafkaClientSettings | None = None
) -> KafkaBroker:
    """A broker whose producer keeps per-partition order across retries (idempotent, acks=all); it
    authenticates as `auth` says (default: the environment; nothing set = PLAINTEXT)."""
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        linger_ms=linger_ms,
        enable_idempotence=True,
        security=broker_security(auth),
        logger=BrokerLog(),
    )


async def ensure_topics(
    bootstrap: str,
    names: Sequence[str] = topics.ALL,
    partitions: int = PARTITIONS,
    auth: KafkaClientSettings | None = None,
) -> None:
    """Create the project's topics if missing (master data compacted); safe to run from every replica.

    A principal without the right to create topics (secure mode) leaves them to the admin: the broker
    answers with per-topic authorization errors, which are not raised."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-admin", **client_kwargs(auth))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                topic_configs={"cleanup.policy": "compact"} if name in topics.COMPACTED else {},
            )
            for name in names
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


class BrokerPublisher:
    """Publishes a batch's outputs: statuses first, then the rest, each wave awaited as a whole."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def send_all(self, messages: list[Outgoing]) -> None:
        """Send every message, keeping their order per key, and wait for the broker's acks."""
        first = [m for m in messages if m.topic == topics.ORDERS_STATUS]
        rest = [m for m in messages if m.topic != topics.ORDERS_STATUS]
        for wave in (first, rest):
            pending: list[Any] = []
            for m in wave:
                sent = await self.broker.publish(m.value, m.topic, key=m.key.encode(), no_confirm=True)
                if inspect.isawaitable(sent):
                    pending.append(sent)
            if pending:
                await asyncio.gather(*pending)


class Backoff:
    """Exponential delay between retries of a batch that hit a transient error."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next(self) -> float:
        """The delay before the next retry."""
        self.failures += 1
        return float(min(self.cap, self.first * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        """After a success."""
        self.failures = 0


def to_incoming(msg: KafkaMessage) -> list[Incoming]:
    """The consumed records of a FastStream batch message."""
    raw = msg.raw_message
    records = list(raw) if isinstance(raw, list | tuple) else [raw]
    return [
        Incoming(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key.decode("utf-8", errors="replace") if isinstance(r.key, bytes) else r.key,
            value=r.value,
            timestamp_ms=r.timestamp or 0,
        )
        for r in records
    ]


async def raw_bodies(msg: KafkaMessage) -> Any:
    """The records' bytes untouched: `contracts.registry.parse` reads each one. FastStream's own JSON decoding
    would read every message twice and raise (rewinding the batch forever) on a hostile one, e.g. `[[[[…`."""
    return msg.body


def subscribe(broker: KafkaBroker, group: str, names: Sequence[str], processor: Processor, max_records: int) -> None:
    """Consume `names` in batches as consumer group `group`; offsets are committed only after the batch's
    effects are stored and its outputs acknowledged (NACK_ON_ERROR rewinds on a transient error)."""
    backoff = Backoff()

    @broker.subscriber(
        *names,
        group_id=group,
        batch=True,
        max_records=max_records,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        decoder=raw_bodies,
    )
    async def consume(body: Any, msg: KafkaMessage) -> None:
        try:
            await processor.process(to_incoming(msg))
        except TRANSIENT as exc:
            delay = backoff.next()
            log.warning("batch_retry", error=f"{type(exc).__name__}: {scrub(str(exc))}", retry_in_s=delay)
            await asyncio.sleep(delay)
            raise
        backoff.reset()
