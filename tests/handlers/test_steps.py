"""The shared handler steps (services/runtime/steps.py) on the in-memory store: load typed, skip a duplicate,
record a decision's state, inbox and events, and record nothing for a refusal about a missing document."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.runtime.batch import Batch
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Outgoing
from services.runtime.steps import DUPLICATE, Decision, Kind, load, save, step


@dataclass(frozen=True)
class Counter:
    n: int


COUNTERS = Kind("counter:", lambda raw: Counter(int(raw["n"])), lambda c: {"n": c.n})
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _event(n: int) -> Outgoing:
    return Outgoing("orders.status", "web:W-1", f'{{"n": {n}}}'.encode())


def add(by: int) -> Any:
    def decide(state: Counter | None) -> Decision[Counter]:
        new = Counter((state.n if state else 0) + by)
        return Decision(new, [_event(new.n)], f"added {by}")

    return decide


class Sent:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def send_all(self, messages: list[Outgoing]) -> None:
        self.messages += messages


async def test_a_step_records_state_inbox_and_events_and_skips_a_duplicate() -> None:
    store, sent = MemoryDocStore(), Sent()
    batch = Batch(store, NOW, "test")
    assert await step(batch, COUNTERS, "a", "in-1", add(2)) == "added 2"
    assert await step(batch, COUNTERS, "a", "in-2", add(3)) == "added 3"  # sees the first decision, typed
    assert await step(batch, COUNTERS, "a", "in-1", add(2)) == DUPLICATE
    await batch.commit(sent)
    row = store.rows["counter:a"]
    assert (row["state"], row["inbox"], row["v"]) == ({"n": 5}, ["in-1", "in-2"], 1)
    assert sent.messages == [_event(2), _event(5)]
    again = Batch(store, NOW, "test")  # the redelivered message in a later batch
    assert await step(again, COUNTERS, "a", "in-2", add(3)) == DUPLICATE
    assert (await load(again, COUNTERS, "a")).state == Counter(5)


async def test_a_decision_that_keeps_a_missing_document_missing_records_nothing_and_sends_its_events() -> None:
    store, sent = MemoryDocStore(), Sent()
    batch = Batch(store, NOW, "test")
    refusal = Decision[Counter](None, [_event(0)], "refused: unknown")
    assert await step(batch, COUNTERS, "ghost", "cmd-1", lambda state: refusal) == "refused: unknown"
    await batch.commit(sent)
    assert store.rows == {} and sent.messages == [_event(0)]


async def test_a_decision_without_a_new_state_keeps_the_state_and_records_input_and_events() -> None:
    store = MemoryDocStore()
    batch = Batch(store, NOW, "test")
    await step(batch, COUNTERS, "a", "in-1", add(1))
    loaded = await load(batch, COUNTERS, "a")
    assert save(batch, loaded, "in-2", Decision[Counter](None, [_event(9)], "kept")) == "kept"
    assert loaded.state == Counter(1) and loaded.doc.inbox == ["in-1", "in-2"]
    assert loaded.doc.pending[-1] == _event(9).to_doc()


async def test_the_typed_state_is_the_decided_object_and_the_stored_form_follows_it() -> None:
    batch = Batch(MemoryDocStore(), NOW, "test")
    await step(batch, COUNTERS, "a", "in-1", add(1))
    first = await load(batch, COUNTERS, "a")
    save(batch, first, "in-2", Decision(replace(first.state or Counter(0), n=7)))
    second = await load(batch, COUNTERS, "a")
    assert second.state == Counter(7) and second.doc.state == {"n": 7}


def test_a_kind_refuses_an_empty_identity() -> None:
    with pytest.raises(ValueError, match="counter:"):
        COUNTERS.key("")
