"""One consumed batch as a unit of work: load documents, apply handlers, write once, publish, commit."""

import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiokafka.errors import KafkaError
from pydantic import BaseModel
from pymongo.errors import PyMongoError

from contracts import topics
from contracts.public import DeadLetter
from contracts.registry import UnreadableMessage, parse
from services.runtime import faults, health, observe, tracing
from services.runtime.ids import derive_id
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import ConflictError, Doc, Marker, Store, staged

log = structlog.get_logger()

RELAY_GRACE = 2.5  # seconds a batch has to publish its events before the relay may take over

# Errors worth retrying the whole batch for: the broker or the database is unreachable, or a replica raced us.
TRANSIENT: tuple[type[BaseException], ...] = (PyMongoError, KafkaError, ConflictError, OSError, TimeoutError)


class Publisher(Protocol):
    """Sends messages and waits until the broker has them."""

    async def send_all(self, messages: list[Outgoing]) -> None: ...


class Batch:
    """The documents and outputs of one batch; handlers read and record through it."""

    def __init__(self, store: Store, now: datetime, service: str, size: int = 1) -> None:
        self.store = store
        self.now = now
        self.service = service
        self.size = size  # records consumed in this batch
        self.docs: dict[str, Doc] = {}
        self.loose: list[Outgoing] = []
        self.dead: list[str] = []  # the source topic of each dead letter among `loose` (counted once published)
        self.scratch: dict[str, Any] = {}  # per-batch working state a service's handlers share
        self.outcomes: Counter[str] = Counter()  # handled records per outcome label (the batch's INFO line)
        self.inputs: frozenset[str] = frozenset()  # keys its records name (key_of): a redelivery loads them again
        self.written: list[Doc] = []  # the documents `commit` stored, each at its new version

    async def prefetch(self, keys: Iterable[str]) -> None:
        """Load in one round trip the documents the batch will touch."""
        missing = [k for k in keys if k not in self.docs]
        self.docs.update(await self.store.load_many(missing))

    async def doc(self, key: str) -> Doc:
        """The document for `key`, loaded once per batch."""
        if key not in self.docs:
            await self.prefetch([key])
        return self.docs[key]

    @contextmanager
    def isolated(self) -> Iterator[Callable[[], None]]:
        """Run one message's handler: inside the block its records and outputs are staged; calling the yielded
        function undoes them all (the documents as before the message, its outputs dropped)."""
        mark, dead = len(self.loose), len(self.dead)
        with staged() as stage:

            def undo() -> None:
                stage.undo()
                del self.loose[mark:]
                del self.dead[dead:]

            yield undo

    def emit(self, message: Outgoing) -> None:
        """An output not tied to a document (dead letters): sent with the batch, before the commit."""
        self.loose.append(message.traced())

    def dead_letter(self, rec: Incoming, reason: str) -> None:
        """Send a record that cannot be processed to the dead-letter topic with the reason and origin."""
        payload = "" if rec.value is None else rec.value[:10_000].decode("utf-8", errors="replace")
        letter = DeadLetter(
            event_id=derive_id("dlq", self.service, rec.origin),
            reason=reason[:2000],
            service=self.service,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            payload=payload,
            occurred_at=self.now,
        )
        self.emit(Outgoing.of(topics.ORDERS_DLQ, rec.key or rec.origin, letter))
        self.dead.append(rec.topic)

    async def commit(self, publisher: Publisher, write_first: tuple[str, ...] = ()) -> int:
        """Note for the relay which documents outside the records' own keys will hold events, write dirty
        documents (shared ones first, one `write_first` prefix after another), publish every pending output,
        remember them as published (clearing inherited ones) and drop the note; returns the number of messages
        sent. After a crash or a failed publish the offsets stay uncommitted: the redelivered records load their
        own documents again and publish what they hold; the note covers the others (the relay publishes them
        within seconds)."""
        started = time.perf_counter()
        with_pending = [d for d in self.docs.values() if d.pending]
        marker = relay_marker([d for d in with_pending if d.key not in self.inputs])
        if marker is not None:
            await self.store.mark(marker)
        for prefix in write_first:  # each group is stored before the next one and before the rest
            self.written += await self.store.save_many(d for d in self.docs.values() if d.key.startswith(prefix))
        self.written += await self.store.save_many(self.docs.values())
        saved = time.perf_counter()
        out = await publish_pending(self.store, publisher, self.service, with_pending, self.loose)
        for topic in self.dead:
            health.DEAD_LETTERS.labels(self.service, topic).inc()
        published = time.perf_counter()
        if marker is not None:
            await unmark(self.store, marker)
        await self.store.clear_pending(d for d in with_pending if d.inherited)
        for d in with_pending:
            d.pending, d.inherited = [], False
        log.debug(
            "batch_committed",
            docs=len(self.docs),
            written=len(self.written),
            sent=len(out),
            save_ms=round((saved - started) * 1000, 1),
            publish_ms=round((published - saved) * 1000, 1),
            clear_ms=round((time.perf_counter() - published) * 1000, 1),
        )
        return len(out)


async def publish_pending(
    store: Store, publisher: Publisher, service: str, with_pending: list[Doc], loose: list[Outgoing]
) -> list[Outgoing]:
    """Publish the pending outputs of `with_pending`, then `loose`; the documents' versions are remembered as
    published (forgotten again if the publish fails). Returns what was sent."""
    out = [Outgoing.from_doc(p) for d in with_pending for p in d.pending] + loose
    store.remember(with_pending)
    try:
        await publisher.send_all(out)
    except BaseException:
        store.forget(with_pending)
        raise
    observe.count_published(service, out)
    return out


def relay_marker(with_pending: list[Doc]) -> Marker | None:
    """The relay's note for documents about to hold events (None when none will): each with the version the
    batch leaves it at; due RELAY_GRACE seconds from now."""
    if not with_pending:
        return None
    now = time.time()
    docs = tuple((d.key, d.version + 1 if d.dirty else d.version) for d in with_pending)
    return Marker(uuid.uuid4().hex, now + RELAY_GRACE, now, docs)


async def unmark(store: Store, marker: Marker) -> None:
    """Drop a relay note once its events are published; if the store refuses, the relay will publish them once
    more (same event ids) rather than the batch being retried."""
    try:
        await store.unmark(marker.id, marker.due)
    except TRANSIENT as exc:
        log.warning("relay_note_left", error=f"{type(exc).__name__}", marker=marker.id)


Handler = Callable[[Batch, Any, Incoming], Awaitable[str]]
KeyOf = Callable[[BaseModel, Incoming], Iterable[str]]
OnUnreadable = Callable[[Batch, Incoming, UnreadableMessage], None]


class Processor:
    """Runs a service's handlers over consumed batches with its guarantees (see docs/adr/0001)."""

    def __init__(
        self,
        service: str,
        store: Store,
        publisher: Publisher,
        handlers: dict[type[BaseModel], Handler],
        key_of: KeyOf,
        on_unreadable: OnUnreadable | None = None,
        *,
        write_first: tuple[str, ...] = (),
        landed: Callable[[Store, list[Doc]], None] | None = None,
        skip_unreadable: frozenset[str] = frozenset(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.store = store
        self.publisher = publisher
        self.handlers = handlers
        self.key_of = key_of
        self.on_unreadable = on_unreadable
        self.write_first = write_first
        self.landed = landed  # told which documents a batch stored once it landed whole
        self.skip_unreadable = skip_unreadable
        self.clock = clock
        self.store_commands: Callable[[], int] = lambda: 0  # commands sent to the store so far (batch log line)

    async def process(self, records: list[Incoming]) -> None:
        """Process one batch; raises only transient errors (the caller then retries from the start)."""
        started, commands = time.perf_counter(), self.store_commands()
        batch = Batch(self.store, self.clock(), self.service, len(records))
        readable: list[tuple[Incoming, BaseModel]] = []
        for rec in records:
            try:
                readable.append((rec, parse(rec.topic, rec.value)))
            except UnreadableMessage as exc:
                if rec.topic in self.skip_unreadable:  # another service dead-letters this shared topic
                    continue
                log.warning("unreadable", topic=rec.topic, offset=rec.offset, event_id=rec.origin, error=exc.reason)
                batch.dead_letter(rec, exc.reason)
                if self.on_unreadable is not None:
                    self.on_unreadable(batch, rec, exc)
        batch.inputs = frozenset(k for rec, msg in readable for k in self.key_of(msg, rec))
        await batch.prefetch(batch.inputs)
        loaded = time.perf_counter()
        for rec, msg in readable:
            await self._handle(batch, rec, msg)
        handled = time.perf_counter()
        sent = await batch.commit(self.publisher, self.write_first)
        if self.landed is not None:
            self.landed(self.store, batch.written)
        elapsed = time.perf_counter() - started
        health.BATCHES.labels(self.service).observe(elapsed)
        log.info(
            "batch",
            records=len(records),
            sent=sent,
            store_commands=self.store_commands() - commands,
            outcomes=dict(batch.outcomes),
            first=records[0].origin if records else None,
            last=records[-1].origin if records else None,
            load_ms=round((loaded - started) * 1000, 1),
            handle_ms=round((handled - loaded) * 1000, 1),
            ms=round(elapsed * 1000, 1),
        )

    async def _handle(self, batch: Batch, rec: Incoming, msg: BaseModel) -> None:
        handler = self.handlers.get(type(msg))
        if handler is None:
            return  # a message of a shared topic meant for another service
        kind = str(getattr(msg, "type", type(msg).__name__))
        with tracing.handling(self.service, kind, rec.origin, rec.key, rec.trace):  # no-op unless tracing is on
            await self._run(batch, rec, msg, handler, kind)

    async def _run(self, batch: Batch, rec: Incoming, msg: BaseModel, handler: Handler, kind: str) -> None:
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(
            topic=rec.topic, partition=rec.partition, offset=rec.offset, event_id=rec.origin, key=rec.key
        )
        try:
            with batch.isolated() as undo:
                try:
                    with faults.message(rec.origin):  # chaos scenario 10 only (off unless ORDERFLOW_FAULT_RATE)
                        outcome = await handler(batch, msg, rec)
                except TRANSIENT:
                    raise  # the whole batch is retried: nothing of it is written
                except Exception as exc:  # a bug or an impossible message: dead-letter it, never loop on it
                    undo()  # none of what it recorded or emitted joins the batch
                    log.exception("handler_failed", type=type(msg).__name__)
                    batch.dead_letter(rec, f"handler failed on {type(msg).__name__}: {type(exc).__name__}: {exc}")
                    outcome = "dead-lettered"
        finally:
            structlog.contextvars.unbind_contextvars("topic", "partition", "offset", "event_id", "key")
        elapsed = time.perf_counter() - started
        label = health.outcome_label(outcome)
        batch.outcomes[label] += 1
        count, latency = health.handled(self.service, kind, label)
        count.inc()
        latency.observe(elapsed)
        log.debug(
            "handled",
            type=getattr(msg, "type", type(msg).__name__),
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            event_id=rec.origin,
            order=rec.key,
            order_number=getattr(msg, "order_number", None),
            outcome=outcome,
            ms=round(elapsed * 1000, 2),
        )
