"""The outbox relay (issue 17): events a batch wrote but did not publish (a crash, a failed publish) are
published within seconds by any replica, even on a document no message touches again; once, by one replica;
with their original event ids; and the relay costs one query per poll at rest."""

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import BaseModel

from contracts import topics
from contracts.public import OrderSubmitted
from services.intake.app import CONSUMES, NAME, build
from services.runtime.batch import RELAY_GRACE, Batch, Processor
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import Marker, record
from services.runtime.relay import RELAY_LEASE, RELAY_MAX_INTERVAL, RELAY_MAX_WAIT, Relay
from services.runtime.status import status
from services.runtime.steps import DUPLICATE, Decision, Kind, load, save
from tests.factories import submitted
from tests.handlers.harness import Harness

ORDERS = Kind[dict[str, Any]]("order:", dict, dict)


def after_grace() -> float:
    """A relay's clock just after the grace of a marker written now."""
    return time.time() + RELAY_GRACE + 0.1


async def on_submitted(batch: Batch, msg: OrderSubmitted, rec: Incoming) -> str:
    """Like inventory's refill: the order's own document, and an event written onto ANOTHER order's document
    (`web:OTHER`) that no later message names."""
    ref, cause = str(msg.channel_order_ref), f"sub:{msg.channel_order_ref}"
    order = await load(batch, ORDERS, f"web:{ref}")
    if order.seen(cause):
        return DUPLICATE
    other = await load(batch, ORDERS, "web:OTHER")
    save(batch, other, None, Decision({"served_by": ref}, [status(cause, "web", "OTHER", "reserved", batch.now)]))
    return save(batch, order, cause, Decision({"ref": ref}, [status(cause, "web", ref, "received", batch.now)], "ok"))


def keys(msg: BaseModel, rec: Incoming) -> list[str]:
    return [f"order:web:{getattr(msg, 'channel_order_ref', '')}"]


class Sent:
    def __init__(self, fail: bool = False) -> None:
        self.messages: list[Outgoing] = []
        self.fail = fail

    async def send_all(self, messages: list[Outgoing]) -> None:
        if self.fail:
            raise KafkaConnectionError("broker unreachable")
        self.messages += messages

    def statuses(self) -> list[tuple[str, str, str]]:
        bodies = [json.loads(m.value) for m in self.messages if m.topic == topics.ORDERS_STATUS]
        return sorted((b["channel_order_ref"], b["status"], b["event_id"]) for b in bodies)


def records(*refs: str) -> list[Incoming]:
    return [
        Incoming(topics.ORDERS_SUBMITTED, 0, n, f"web:{ref}", json.dumps(submitted(ref)).encode())
        for n, ref in enumerate(refs)
    ]


def processor(store: MemoryDocStore, sent: Sent) -> Processor:
    return Processor("toy", store, sent, {OrderSubmitted: on_submitted}, keys)


def replica(store: MemoryDocStore) -> MemoryDocStore:
    """Another process on the same stored documents and markers."""
    return MemoryDocStore(store.rows, store.markers)


async def _stranded() -> tuple[MemoryDocStore, list[tuple[str, str, str]]]:
    """A batch whose events were written but whose publish failed; returns the store and what a healthy
    publish would have sent."""
    healthy = Sent()
    await processor(MemoryDocStore(), healthy).process(records("A-1"))
    store = MemoryDocStore()
    with pytest.raises(KafkaConnectionError):
        await processor(store, Sent(fail=True)).process(records("A-1"))
    assert len(store.markers) == 1
    return store, healthy.statuses()


async def test_events_no_message_will_touch_again_are_published_by_another_replica_after_the_grace() -> None:
    store, expected = await _stranded()
    redelivered = Sent()
    await processor(replica(store), redelivered).process(records("A-1"))  # the batch redelivered elsewhere
    assert [s[:2] for s in redelivered.statuses()] == [("A-1", "received")]  # OTHER's event is stranded
    sent, later = Sent(), after_grace()
    relay = Relay("toy", replica(store), sent, clock=lambda: later)
    assert await Relay("toy", replica(store), sent, clock=time.time).run_once() == 0  # not before the grace
    assert await relay.run_once() == 1
    assert ("OTHER", "reserved") in [s[:2] for s in sent.statuses()]
    assert set(sent.statuses()) <= set(expected)  # the original event ids: consumers deduplicate
    assert store.markers == {} and all(not row["pending"] for row in store.rows.values())
    sent.messages.clear()
    assert await relay.run_once() == 0 and sent.messages == []  # published once


async def test_a_committed_batch_leaves_no_marker_and_the_relay_sends_nothing() -> None:
    store, sent = MemoryDocStore(), Sent()
    await processor(store, sent).process(records("A-1", "A-2"))
    assert store.markers == {}
    later = after_grace()
    assert await Relay("toy", replica(store), Sent(), clock=lambda: later).run_once() == 0


async def test_one_replica_relays_a_marker_and_duplicate_delivery_afterwards_publishes_nothing_new() -> None:
    store, expected = await _stranded()
    first, second, later = Sent(), Sent(), after_grace()
    a = Relay("toy", replica(store), first, clock=lambda: later)
    b = Relay("toy", replica(store), second, clock=lambda: later)
    due = await b.store.due_markers(later, 10)  # b saw the marker due ...
    assert await a.run_once() == 1  # ... but a claimed and relayed it first
    assert not await b.store.claim(due[0], later + RELAY_LEASE)
    assert await b.run_once() == 0 and second.messages == []
    assert first.statuses() == [s for s in expected if s[0] == "OTHER"]  # the marker names only OTHER
    again = Sent()
    await processor(replica(store), again).process(records("A-1"))  # the original batch delivered once more
    assert again.statuses() == [s for s in expected if s[0] == "A-1"]  # its own document: the redelivery sends
    once_more = Sent()
    await processor(replica(store), once_more).process(records("A-1"))
    assert once_more.messages == []


async def own(batch: Batch, msg: OrderSubmitted, rec: Incoming) -> str:
    """A handler that writes events only onto the document its record names."""
    ref, cause = str(msg.channel_order_ref), f"sub:{msg.channel_order_ref}"
    order = await load(batch, ORDERS, f"web:{ref}")
    if order.seen(cause):
        return DUPLICATE
    return save(batch, order, cause, Decision({"ref": ref}, [status(cause, "web", ref, "received", batch.now)], "ok"))


async def test_events_on_the_records_own_documents_need_no_marker_the_redelivery_publishes_them() -> None:
    def own_processor(store: MemoryDocStore, sent: Sent) -> Processor:
        return Processor("toy", store, sent, {OrderSubmitted: own}, keys)

    healthy = Sent()
    await own_processor(MemoryDocStore(), healthy).process(records("B-1", "B-2"))
    store = MemoryDocStore()
    with pytest.raises(KafkaConnectionError):
        await own_processor(store, Sent(fail=True)).process(records("B-1", "B-2"))
    assert store.markers == {}  # no marker insert, no delete: two store round trips fewer per batch
    later = after_grace()
    assert await Relay("toy", replica(store), Sent(), clock=lambda: later).run_once() == 0
    redelivered = Sent()
    await own_processor(replica(store), redelivered).process(records("B-1", "B-2"))  # offsets were not committed
    assert redelivered.statuses() == healthy.statuses()  # the original event ids, both orders
    again = Sent()
    await own_processor(replica(store), again).process(records("B-1", "B-2"))  # duplicate delivery
    assert again.messages == []


async def test_a_marker_whose_writes_never_landed_is_kept_then_dropped_after_the_maximum_wait() -> None:
    store = MemoryDocStore()
    created = time.time()
    await store.mark(Marker("m-1", created + RELAY_GRACE, created, (("order:web:LOST", 1),)))  # crash before save
    sent, later = Sent(), created + RELAY_GRACE + 0.1
    assert await Relay("toy", store, sent, clock=lambda: later).run_once() == 1
    assert sent.messages == [] and "m-1" in store.markers  # kept: a paused writer may still write it
    assert await Relay("toy", store, sent, clock=lambda: later + RELAY_LEASE).run_once() == 1
    assert "m-1" in store.markers
    assert await Relay("toy", store, sent, clock=lambda: created + RELAY_MAX_WAIT + RELAY_LEASE * 3).run_once() == 1
    assert store.markers == {}


async def test_a_failed_relay_publish_keeps_the_events_for_a_later_attempt() -> None:
    store, expected = await _stranded()
    later = after_grace()
    with pytest.raises(KafkaConnectionError):
        await Relay("toy", replica(store), Sent(fail=True), clock=lambda: later).run_once()
    sent = Sent()
    assert await Relay("toy", replica(store), sent, clock=lambda: later + RELAY_LEASE).run_once() == 1
    assert sent.statuses() == [s for s in expected if s[0] == "OTHER"]


async def test_the_relay_of_a_service_publishes_through_its_broker() -> None:
    async with Harness(NAME, CONSUMES, build) as h:
        doc = (await h.store.load_many(["order:web:R-1"]))["order:web:R-1"]
        now = time.time()
        record(doc, "in-1", {"status": "received"}, [status("in-1", "web", "R-1", "received", datetime.now(UTC))])
        await h.store.mark(Marker("m-9", now - 1, now - RELAY_GRACE - 1, (("order:web:R-1", 1),)))
        await h.store.save_many([doc])  # written, then the process died before publishing
        assert await h.relay.run_once() == 1
        assert h.statuses() == ["received"]


async def test_at_rest_the_relay_polls_at_most_once_per_max_interval() -> None:
    class Counting(MemoryDocStore):
        polls = 0

        async def due_markers(self, now: float, limit: int) -> list[Marker]:
            Counting.polls += 1
            return await super().due_markers(now, limit)

    relay = Relay("toy", Counting(), Sent())
    await relay.start()
    await asyncio.sleep(RELAY_MAX_INTERVAL * 1.5)
    await relay.stop()
    assert 1 <= Counting.polls <= 2
