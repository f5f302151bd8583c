"""The per-key document store, on the real FerretDB and in memory (the same tests: MemoryDocStore keeps
DocStore's guarantees): version guards, the published-outputs memory, counters."""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.runtime.batch import Batch
from services.runtime.memory import MemoryDocStore
from services.runtime.messages import Outgoing
from services.runtime.outbox import ConflictError, Doc, DocStore, Marker, Store, record

Replicas = Callable[[], Store]  # each call: one more process on the same stored documents


@pytest.fixture(params=["memory", pytest.param("ferretdb", marks=pytest.mark.e2e)])
def replica(request: pytest.FixtureRequest) -> Replicas:
    """A factory of processes sharing one store: in memory, or one collection of the real FerretDB."""
    if request.param == "memory":
        rows: dict[str, dict[str, Any]] = {}
        markers: dict[str, Marker] = {}
        return lambda: MemoryDocStore(rows, markers)
    collection = request.getfixturevalue("collection")
    return lambda: DocStore(collection)


OUT = Outgoing("orders.status", "web:W-1", b'{"status": "received"}')


async def _write_with_output(store: Store, key: str = "order:web:W-1") -> None:
    doc = (await store.load_many([key]))[key]
    record(doc, "in-1", {"n": 1}, [OUT])
    await store.save_many([doc])


async def test_outputs_published_by_this_process_are_not_published_again(replica: Replicas) -> None:
    store = replica()
    await _write_with_output(store)
    doc = (await store.load_many(["order:web:W-1"]))["order:web:W-1"]
    assert [Outgoing.from_doc(p) for p in doc.pending] == [OUT]  # written, not yet published
    store.remember([doc])
    again = (await store.load_many(["order:web:W-1"]))["order:web:W-1"]
    assert again.pending == [] and again.version == 1


async def test_a_process_that_did_not_publish_them_publishes_them_again(replica: Replicas) -> None:
    writer, other = replica(), replica()  # two replicas, or before and after a restart
    await _write_with_output(writer)
    doc = (await writer.load_many(["order:web:W-1"]))["order:web:W-1"]
    writer.remember([doc])
    seen_by_other = (await other.load_many(["order:web:W-1"]))["order:web:W-1"]
    assert [Outgoing.from_doc(p) for p in seen_by_other.pending] == [OUT]


async def test_a_newer_version_written_elsewhere_keeps_its_outputs_pending(replica: Replicas) -> None:
    mine, theirs = replica(), replica()
    await _write_with_output(mine)
    doc = (await mine.load_many(["order:web:W-1"]))["order:web:W-1"]
    mine.remember([doc])
    their_doc = (await theirs.load_many(["order:web:W-1"]))["order:web:W-1"]
    their_doc.pending = []  # they published the first output
    record(their_doc, "in-2", {"n": 2}, [Outgoing("orders.status", "web:W-1", b'{"status": "approved"}')])
    await theirs.save_many([their_doc])
    reloaded = (await mine.load_many(["order:web:W-1"]))["order:web:W-1"]
    assert reloaded.version == 2 and [p["value"] for p in reloaded.pending] == ['{"status": "approved"}']


async def test_a_stale_version_is_refused(replica: Replicas) -> None:
    a, b = replica(), replica()
    await _write_with_output(a)
    doc_a = (await a.load_many(["order:web:W-1"]))["order:web:W-1"]
    doc_b = (await b.load_many(["order:web:W-1"]))["order:web:W-1"]
    record(doc_a, "in-2", {"n": 2}, [])
    await a.save_many([doc_a])
    record(doc_b, "in-3", {"n": 3}, [])
    with pytest.raises(ConflictError):
        await b.save_many([doc_b])


class _Sent:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def send_all(self, messages: list[Outgoing]) -> None:
        self.messages += messages


async def test_a_stale_copy_resends_with_the_same_ids_and_never_clears_a_newer_version(replica: Replicas) -> None:
    a, b = replica(), replica()
    await _write_with_output(a)  # v1 pending [received], not yet known as published by anyone
    stale = Batch(b, datetime.now(UTC), "test")
    await stale.prefetch(["order:web:W-1"])  # b holds v1
    newer = (await a.load_many(["order:web:W-1"]))["order:web:W-1"]
    cancelled = Outgoing("orders.status", "web:W-1", b'{"status": "cancelled"}')
    record(newer, "in-2", {"n": 2}, [cancelled])
    await a.save_many([newer])  # v2 [received, cancelled]
    sent = _Sent()
    await stale.commit(sent)
    assert sent.messages == [OUT]  # the same event again: consumers keep its first appearance
    current = (await replica().load_many(["order:web:W-1"]))["order:web:W-1"]
    assert current.version == 2 and [Outgoing.from_doc(p) for p in current.pending] == [OUT, cancelled]


async def test_inherited_outputs_are_sent_once_more_then_cleared_for_everyone(replica: Replicas) -> None:
    writer, heir, third = replica(), replica(), replica()
    await _write_with_output(writer)  # written; the writer "crashed" before publishing
    batch = Batch(heir, datetime.now(UTC), "test")
    await batch.prefetch(["order:web:W-1"])
    sent = _Sent()
    await batch.commit(sent)
    assert sent.messages == [OUT]
    later = (await third.load_many(["order:web:W-1"]))["order:web:W-1"]
    assert later.pending == [] and later.version == 1


async def test_a_counter_hands_out_each_number_once_across_replicas(replica: Replicas) -> None:
    a, b = replica(), replica()
    assert await a.increment("seq:20260101", 3) == 3
    assert await b.increment("seq:20260101", 2) == 5
    assert await a.increment("seq:20260102", 1) == 1
    with pytest.raises(ValueError, match="seq:20260101"):
        await a.increment("seq:20260101", 0)


async def test_scan_reads_the_states_under_a_prefix(replica: Replicas) -> None:
    store = replica()
    await _write_with_output(store, "stock:A")
    await _write_with_output(store, "stock:B")
    await _write_with_output(store, "order:web:W-1")
    assert await store.scan("stock:") == {"stock:A": {"n": 1}, "stock:B": {"n": 1}}
    assert await store.scan("nothing:") == {}


async def test_relay_markers_are_due_in_order_claimed_by_one_process_and_deleted_only_unchanged(
    replica: Replicas,
) -> None:
    a, b = replica(), replica()
    if isinstance(a, DocStore):
        await a.setup()
    early = Marker("m-early", 100.0, 90.0, (("order:web:W-1", 1), ("stock:A", 4)))
    await a.mark(Marker("m-late", 200.0, 190.0, (("order:web:W-2", 1),)))
    await a.mark(early)
    assert await b.due_markers(150.0, 10) == [early]
    assert [m.id for m in await b.due_markers(250.0, 10)] == ["m-early", "m-late"]
    assert await a.claim(early, 160.0)
    assert not await b.claim(early, 170.0)  # b saw it due too late: a holds it
    await b.unmark("m-early", 100.0)  # not with the old due: a re-armed it
    assert [m.id for m in await a.due_markers(165.0, 10)] == ["m-early"]
    await a.unmark("m-early", 160.0)
    assert [m.id for m in await a.due_markers(1000.0, 10)] == ["m-late"]


class _Ordered(MemoryDocStore):
    """A memory store that remembers the keys of each write command, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[str]] = []

    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        written = await super().save_many(docs)
        if written:
            self.writes.append(sorted(d.key for d in written))
        return written


async def _recorded(store: Store, keys: list[str]) -> Batch:
    """A batch that loaded `keys` and recorded a change of each, not yet committed."""
    batch = Batch(store, datetime.now(UTC), "test")
    await batch.prefetch(keys)
    for key in keys:
        record(await batch.doc(key), f"in-{key}", {"k": key})
    return batch


async def test_write_first_groups_are_stored_one_prefix_after_another_then_the_rest() -> None:
    store = _Ordered()
    batch = await _recorded(store, ["order:1", "stock:A", "page:A:0", "order:2", "stock:B"])
    await batch.commit(_Sent(), ("page:", "stock:"))
    assert store.writes == [["page:A:0"], ["stock:A", "stock:B"], ["order:1", "order:2"]]


async def test_a_note_on_a_landed_version_holds_until_someone_writes_the_document_again(replica: Replicas) -> None:
    mine, theirs = replica(), replica()
    batch = await _recorded(mine, ["stock:A", "order:1"])
    await batch.commit(_Sent(), ("stock:",))
    assert sorted((d.key, d.version) for d in batch.written) == [("order:1", 1), ("stock:A", 1)]
    mine.note_landed("stock:A", 1, "carried")
    assert mine.landed_note("stock:A", 1) == "carried" and theirs.landed_note("stock:A", 1) is None
    doc = (await theirs.load_many(["stock:A"]))["stock:A"]
    record(doc, "in-2", {"k": 2})
    await theirs.save_many([doc])
    assert mine.landed_note("stock:A", 2) is None  # written since: the note no longer applies


async def test_a_batch_that_lost_a_race_lists_only_what_it_stored_and_lands_nothing(replica: Replicas) -> None:
    mine, theirs = replica(), replica()
    batch = await _recorded(mine, ["stock:A", "order:1"])
    doc = (await theirs.load_many(["order:1"]))["order:1"]
    record(doc, "in-2", {"k": "theirs"})
    await theirs.save_many([doc])
    with pytest.raises(ConflictError):
        await batch.commit(_Sent(), ("stock:",))
    assert [d.key for d in batch.written] == ["stock:A"]  # the processor is not told it landed: commit raised
