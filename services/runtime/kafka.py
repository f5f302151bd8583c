"""Kafka wiring shared by the services: broker, topics, the batch subscriber and the publisher."""

import asyncio
import inspect
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from contracts import topics
from services.runtime import tracing
from services.runtime.batch import TRANSIENT, Processor
from services.runtime.logging import BrokerLog, scrub
from services.runtime.messages import Incoming, Outgoing
from services.runtime.retry import Backoff
from services.runtime.settings import DEFAULT_PARTITIONS, KafkaClientSettings, TopicSettings

log = structlog.get_logger()
PARTITIONS = DEFAULT_PARTITIONS  # the local default (KAFKA_TOPIC_PARTITIONS)


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


def bootstrap_servers(bootstrap: str) -> list[str]:
    """The brokers of a comma-separated KAFKA_BOOTSTRAP_SERVERS; an empty list is refused by name."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers:
        raise ValueError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r}: expected host:port[,host:port...]")
    return servers


def make_broker(
    bootstrap: str, client_id: str, linger_ms: int = 0, auth: KafkaClientSettings | None = None
) -> KafkaBroker:
    """A broker whose producer keeps per-partition order across retries (idempotent, acks=all); it
    authenticates as `auth` says (default: the environment; nothing set = PLAINTEXT). `bootstrap` may list
    several brokers, comma-separated (FastStream would take the whole string for one host)."""
    return KafkaBroker(
        bootstrap_servers(bootstrap),
        client_id=client_id,
        linger_ms=linger_ms,
        enable_idempotence=True,
        security=broker_security(auth),
        logger=BrokerLog(),
    )


class TopicMismatch(RuntimeError):
    """The cluster's topics are weaker than configured, or cannot be made as configured: do not start."""


@dataclass(frozen=True)
class TopicShape:
    """What the cluster says of one existing topic."""

    partitions: int
    replicas: int  # the fewest replicas any of its partitions has
    min_insync: int | None  # None: this principal may not read the topic's configuration


def shortfalls(name: str, shape: TopicShape, layout: TopicSettings) -> list[str]:
    """How an existing topic falls short of the configured layout (empty: it is at least as strong)."""
    out = []
    if shape.replicas < layout.kafka_topic_replication_factor:
        out.append(
            f"{shape.replicas} replica(s) < KAFKA_TOPIC_REPLICATION_FACTOR={layout.kafka_topic_replication_factor}"
        )
    if shape.partitions < layout.kafka_topic_partitions:
        out.append(f"{shape.partitions} partition(s) < KAFKA_TOPIC_PARTITIONS={layout.kafka_topic_partitions}")
    if shape.min_insync is not None and shape.min_insync < layout.kafka_topic_min_insync_replicas:
        out.append(
            f"min.insync.replicas={shape.min_insync} < "
            f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS={layout.kafka_topic_min_insync_replicas}"
        )
    return [f"topic {name}: {' and '.join(out)}"] if out else []


def new_topic(name: str, layout: TopicSettings) -> NewTopic:
    """The topic as configured: partitions, replicas and min.insync.replicas (master data compacted)."""
    configs = {"min.insync.replicas": str(layout.kafka_topic_min_insync_replicas)}
    if name in topics.COMPACTED:
        configs["cleanup.policy"] = "compact"
    return NewTopic(
        name,
        num_partitions=layout.kafka_topic_partitions,
        replication_factor=layout.kafka_topic_replication_factor,
        topic_configs=configs,
    )


async def _create(admin: AIOKafkaAdminClient, names: list[str], layout: TopicSettings) -> list[str]:
    """Create `names` exactly as configured; returns those another client created meanwhile. Authorization
    refusals leave a topic to the admin; any other refusal (e.g. fewer brokers than replicas) is raised."""
    if not names:
        return []
    response = await admin.create_topics([new_topic(n, layout) for n in names])
    raced = []
    for entry in response.to_object()["topic_errors"]:
        error = for_code(entry["error_code"])
        if error is TopicAlreadyExistsError:
            raced.append(entry["topic"])
        elif error in (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
            log.info("topic_left_to_admin", topic=entry["topic"])
        elif entry["error_code"]:
            raise TopicMismatch(
                f"cannot create topic {entry['topic']} with {layout.kafka_topic_replication_factor} replica(s), "
                f"{layout.kafka_topic_partitions} partition(s), min.insync.replicas="
                f"{layout.kafka_topic_min_insync_replicas}: {error.__name__}: {entry['error_message']}"
            )
    return raced


async def _min_insync(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """min.insync.replicas of the topics whose configuration this principal may read."""
    wanted = {"min.insync.replicas": None}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, configs=wanted) for n in names]
    out = {}
    for response in await admin.describe_configs(resources):
        for res in response.to_object()["resources"]:
            for entry in res["config_entries"] if not res["error_code"] else []:
                if entry["config_names"] == "min.insync.replicas":
                    out[res["resource_name"]] = int(entry["config_value"])
    return out


async def topic_shapes(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicShape]:
    """The shape of each of `names` this principal may describe (a topic just created by another client may
    take a moment to appear in the metadata: retried for up to ~5 s)."""
    for attempt in range(25):
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        unknown = [n for n in names if described.get(n, {}).get("error_code") in (None, 3, 5)]
        if not unknown or attempt == 24:
            break
        await asyncio.sleep(0.2)
    readable = [n for n in names if described.get(n, {}).get("error_code") == 0 and described[n]["partitions"]]
    insync = await _min_insync(admin, readable) if readable else {}
    return {
        n: TopicShape(
            partitions=len(described[n]["partitions"]),
            replicas=min(len(p["replicas"]) for p in described[n]["partitions"]),
            min_insync=insync.get(n),
        )
        for n in readable
    }


async def ensure_topics(
    bootstrap: str,
    names: Sequence[str] = topics.ALL,
    layout: TopicSettings | None = None,
    auth: KafkaClientSettings | None = None,
) -> None:
    """Create the missing topics exactly as configured (`layout`, default from the environment; master data
    compacted) and raise TopicMismatch, one line, when an existing topic has fewer replicas or partitions, or a
    lower min.insync.replicas, than configured. Safe to run from every replica.

    A principal without the right to create or describe topics (secure mode) leaves them to the admin: the
    broker's per-topic authorization errors are logged, not raised."""
    try:
        layout = layout or TopicSettings()
    except ValidationError as exc:
        reasons = "; ".join(
            ":".join(map(str, e["loc"])) + (": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise TopicMismatch(f"invalid topic settings: {reasons}") from None
    if layout.kafka_topic_min_insync_replicas > layout.kafka_topic_replication_factor:
        raise TopicMismatch(
            f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS={layout.kafka_topic_min_insync_replicas} exceeds "
            f"KAFKA_TOPIC_REPLICATION_FACTOR={layout.kafka_topic_replication_factor}: no write could ever succeed"
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-admin", **client_kwargs(auth))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        raced = await _create(admin, [n for n in names if n not in existing], layout)
        shapes = await topic_shapes(admin, [n for n in names if n in existing or n in raced])
    finally:
        await admin.close()
    problems = [line for name, shape in shapes.items() for line in shortfalls(name, shape, layout)]
    if problems:
        raise TopicMismatch(
            "; ".join(problems) + ": refusing to start (grow the topics on the cluster, or lower the configuration)"
        )


class BrokerPublisher:
    """Publishes a batch's outputs: statuses first, then the rest, each wave awaited as a whole. Without
    tracing, every message goes straight to the started broker's Kafka producer: FastStream's per-message
    publish (a command object and its middlewares) cost ~30 µs of CPU per message, 1.5 times the producer's
    own, and the outputs need none of it (their bytes are final; `batch.publish_pending` counts them). With
    tracing on, or on FastStream's in-memory test broker, each goes through `broker.publish`, so
    the telemetry middleware writes the trace context into its headers."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    def producer(self) -> AIOKafkaProducer | None:
        """The started broker's own Kafka producer, or None: tracing on, not started, or a test broker (FastStream
        0.7 keeps the producer private: a FastStream that moved it falls back to `broker.publish`, and
        `tests/e2e/test_direct_publish_e2e.py` fails)."""
        if tracing.enabled():
            return None
        state = getattr(self.broker.config.broker_config.producer, "_producer", None)
        producer = getattr(state, "producer", None)
        return producer if isinstance(producer, AIOKafkaProducer) else None

    async def send_all(self, messages: list[Outgoing]) -> None:
        """Send every message, keeping their order per key, and wait for the broker's acks."""
        first = [m for m in messages if m.topic == topics.ORDERS_STATUS]
        rest = [m for m in messages if m.topic != topics.ORDERS_STATUS]
        producer = self.producer()
        for wave in (first, rest):
            pending: list[Any] = []
            for m in wave:
                if producer is not None:
                    pending.append(await producer.send(m.topic, m.value, key=m.key.encode()))
                    continue
                with tracing.within(m.trace):  # the telemetry middleware continues the trace that caused it
                    sent = await self.broker.publish(m.value, m.topic, key=m.key.encode(), no_confirm=True)
                if inspect.isawaitable(sent):
                    pending.append(sent)
            if pending:
                await asyncio.gather(*pending)


def to_incoming(msg: KafkaMessage) -> list[Incoming]:
    """The consumed records of a FastStream batch message."""
    raw = msg.raw_message
    records = list(raw) if isinstance(raw, list | tuple) else [raw]
    traced = tracing.enabled()
    return [
        Incoming(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key.decode("utf-8", errors="replace") if isinstance(r.key, bytes) else r.key,
            value=r.value,
            timestamp_ms=r.timestamp or 0,
            trace=tracing.traceparent_of(r.headers) if traced else None,
        )
        for r in records
    ]


async def raw_bodies(msg: KafkaMessage) -> Any:
    """The records' bytes untouched: `contracts.registry.parse` reads each one. FastStream's own JSON decoding
    would read every message twice and raise (rewinding the batch forever) on a hostile one, e.g. `[[[[…`."""
    return msg.body


def subscribe(
    broker: KafkaBroker,
    group: str,
    names: Sequence[str],
    processor: Processor,
    max_records: int,
    fetch: tuple[int, int],
    poll_ms: int = 0,
) -> None:
    """Consume `names` in batches as consumer group `group`; offsets are committed only after the batch's
    effects are stored and its outputs acknowledged. A batch that fails outside its handlers (a transient error:
    store or broker unreachable, a lost race; or a fault: parsing, prefetch, save) is rewound (NACK_ON_ERROR)
    after a capped exponential backoff with jitter, never retried at once; each retry is counted. `fetch` is
    (min bytes, max wait ms): the broker holds a fetch until either is reached, so the records of one wait come
    as one batch. (A pause in the handler would not do: the client fetches no partition of a broker while
    records it fetched from that broker are still unconsumed, so records arriving during the pause would wait
    for the batch after the next.) A poll waits `poll_ms` for fetched records (0: the fetch wait + 50 ms); one
    that found none is followed by FastStream's pause of as long, so a record at rest may wait that much more."""
    backoff = Backoff(processor.service, "batch")

    @broker.subscriber(
        *names,
        group_id=group,
        batch=True,
        max_records=max_records,
        fetch_min_bytes=fetch[0],
        fetch_max_wait_ms=fetch[1],
        batch_timeout_ms=poll_ms or fetch[1] + 50,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        decoder=raw_bodies,
    )
    async def consume(body: Any, msg: KafkaMessage) -> None:
        try:
            records = to_incoming(msg)
            await processor.process(records)
        except Exception as exc:
            kind = "transient" if isinstance(exc, TRANSIENT) else "fault"
            delay = backoff.next(kind)
            error = f"{type(exc).__name__}: {scrub(str(exc))}"
            if kind == "transient":
                log.warning("batch_retry", kind=kind, error=error, retry_in_s=round(delay, 3))
            else:
                log.error("batch_retry", kind=kind, error=error, retry_in_s=round(delay, 3), exc_info=True)
            await asyncio.sleep(delay)
            raise
        backoff.reset()
