"""Per-message isolation inside a batch (issue 17): a message's writes and events join the batch only if its
handler succeeds; one that fails part-way leaves no state change and no event and goes to orders.dlq with its
reason, while the rest of the batch is written and published; redelivered batches change nothing more."""

import json
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from pydantic import BaseModel

from contracts import topics
from contracts.public import OrderSubmitted
from services.runtime.batch import Batch, Processor
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Incoming, Outgoing
from services.runtime.status import status
from services.runtime.steps import DUPLICATE, Decision, Kind, load, save
from tests.factories import submitted

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TALLY = Kind[dict[str, Any]]("tally:", dict, dict)  # one document every message changes
ORDERS = Kind[dict[str, Any]]("order:", dict, dict)


async def on_submitted(batch: Batch, msg: OrderSubmitted, rec: Incoming) -> str:
    """Counts the order in the shared tally, emits a loose output, then (for refs with FAIL) raises before
    recording the order itself: a fault after the handler has already recorded something."""
    ref, cause = str(msg.channel_order_ref), f"sub:{msg.channel_order_ref}"
    order = await load(batch, ORDERS, f"web:{ref}")
    if order.seen(cause):
        return DUPLICATE
    tally = await load(batch, TALLY, "all")
    refs = [*(tally.state or {}).get("refs", []), ref]
    save(batch, tally, None, Decision({"refs": refs}, [status(cause, "web", ref, "in_review", batch.now)]))
    batch.emit(status(cause, "web", ref, "approved", batch.now))
    if "FAIL" in ref:
        raise RuntimeError(f"injected fault for {ref} after recording")
    return save(batch, order, cause, Decision({"ref": ref}, [status(cause, "web", ref, "received", batch.now)], "ok"))


def keys(msg: BaseModel, rec: Incoming) -> list[str]:
    return ["tally:all", f"order:web:{getattr(msg, 'channel_order_ref', '')}"]


class Sent:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def send_all(self, messages: list[Outgoing]) -> None:
        self.messages += messages

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value) for m in self.messages if m.topic == topic]


def records(*refs: str) -> list[Incoming]:
    return [
        Incoming(topics.ORDERS_SUBMITTED, 0, offset, f"web:{ref}", json.dumps(submitted(ref)).encode())
        for offset, ref in enumerate(refs)
    ]


def processor(store: MemoryDocStore, sent: Sent) -> Processor:
    return Processor("toy", store, sent, {OrderSubmitted: on_submitted}, keys, clock=lambda: NOW)


async def test_a_failing_message_leaves_no_state_and_no_event_while_the_rest_of_the_batch_commits() -> None:
    store, sent = MemoryDocStore(), Sent()
    letters = ("orderflow_dead_letters_total", {"service": "toy", "topic": topics.ORDERS_SUBMITTED})
    before = REGISTRY.get_sample_value(*letters) or 0.0
    await processor(store, sent).process(records("A-1", "B-FAIL", "C-1"))
    assert (REGISTRY.get_sample_value(*letters) or 0.0) - before == 1
    assert store.rows["tally:all"]["state"] == {"refs": ["A-1", "C-1"]}
    assert set(store.find("order:")) == {"order:web:A-1", "order:web:C-1"}
    statuses = [(s["channel_order_ref"], s["status"]) for s in sent.bodies(topics.ORDERS_STATUS)]
    assert sorted(statuses) == sorted(
        [(r, s) for r in ("A-1", "C-1") for s in ("in_review", "approved", "received")]
    ), "nothing of B-FAIL is published"
    [letter] = sent.bodies(topics.ORDERS_DLQ)
    assert letter["offset"] == 1 and letter["service"] == "toy"
    assert "RuntimeError: injected fault for B-FAIL after recording" in letter["reason"]


async def test_a_failure_undoes_only_its_own_message_on_a_document_earlier_messages_changed() -> None:
    store, sent = MemoryDocStore(), Sent()
    await processor(store, sent).process(records("A-1", "A-2", "B-FAIL"))
    assert store.rows["tally:all"]["state"] == {"refs": ["A-1", "A-2"]}  # A-1's and A-2's changes kept


async def test_duplicate_delivery_of_a_batch_with_a_failing_message_changes_nothing_more() -> None:
    store, sent = MemoryDocStore(), Sent()
    proc = processor(store, sent)
    await proc.process(records("A-1", "B-FAIL", "A-1"))  # A-1 twice in one batch: applied once
    first = {k: dict(v) for k, v in store.rows.items()}
    letters = sent.bodies(topics.ORDERS_DLQ)
    sent.messages.clear()
    await proc.process(records("A-1", "B-FAIL", "A-1"))  # the batch redelivered (e.g. offsets not committed)
    assert store.rows["tally:all"]["state"] == {"refs": ["A-1"]}
    assert {k: v["v"] for k, v in store.rows.items()} == {k: v["v"] for k, v in first.items()}
    assert sent.bodies(topics.ORDERS_STATUS) == []  # nothing new: A-1 is a duplicate, B-FAIL undone again
    again = sent.bodies(topics.ORDERS_DLQ)
    assert [d["event_id"] for d in again] == [d["event_id"] for d in letters]  # the same dead letter: deduped


async def test_a_fresh_replica_delivering_the_failing_message_alone_also_records_nothing() -> None:
    rows: dict[str, dict[str, Any]] = {}
    sent = Sent()
    await processor(MemoryDocStore(rows), sent).process(records("B-FAIL"))
    assert rows == {} and sent.bodies(topics.ORDERS_STATUS) == []
    assert len(sent.bodies(topics.ORDERS_DLQ)) == 1
