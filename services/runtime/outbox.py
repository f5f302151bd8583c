"""Per-key documents with an inbox (processed input ids) and an outbox (pending outputs).

A handler's state change and the events it causes are written in ONE document write; the events
are published after the write. A crash in between leaves them pending, and the next batch that
touches the key (the redelivery of the same input, since the offset was not committed) publishes
them again with the same event ids. That is the outbox pattern with the relay run inline by the
consumer, on FerretDB's and MongoDB's single-document atomicity.

Published events are not cleared with a second write: the process remembers which document
versions it has published (bounded), and a later load of the same version skips them; the next
write of the document drops them. A process that finds events it did not publish (after a crash or
a restart, or written by another replica) publishes them once more with the same ids and clears them
with a version-guarded second write, so no other process sends them yet again.
"""

import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import lz4.block
import orjson
from bson import Binary
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.runtime import faults
from services.runtime.messages import Outgoing

INBOX_LIMIT = 256
STALE_INDEX = "state.order_number_1"
PUBLISHED_MEMORY = 100_000  # document versions remembered as published, per process
LANDED_MEMORY = 100_000  # notes on document versions written by batches that landed whole, per process


class ConflictError(RuntimeError):
    """Another replica wrote the same document first: the batch is retried from its first record."""


@dataclass
class Doc:
    """A loaded document: its key, version, state, and what it has processed and not yet published."""

    key: str
    version: int
    state: dict[str, Any] | None
    inbox: list[str] = field(default_factory=list)
    pending: list[dict[str, str]] = field(default_factory=list)
    dirty: bool = False
    inherited: bool = False  # loaded with outputs this process has not published (a crash, another replica)
    view: tuple[object, Any] | None = None  # the state as last read or decided in a service's type (steps.Kind)

    def seen(self, input_id: str) -> bool:
        """Whether this input was already applied to the document."""
        return input_id in self.inbox


@dataclass(frozen=True)
class Marker:
    """A batch's note, written before its documents, that they hold events to publish: `docs` are the keys and
    the versions the batch writes; `due` (epoch seconds) is when the relay may take over if the note is still
    there (the batch crashed, or its publish failed); `created` bounds how long unlanded writes are awaited."""

    id: str
    due: float
    created: float
    docs: tuple[tuple[str, int], ...]


class Store(ABC):
    """The per-key documents of one service as the batch sees them: version-guarded writes, inbox, outbox,
    and the process's memory of the document versions whose outputs it has published."""

    def __init__(self) -> None:
        self.published: OrderedDict[str, int] = OrderedDict()  # key -> version whose pending events were sent
        self.landed: OrderedDict[str, tuple[int, Any]] = OrderedDict()  # key -> (version, note): `note_landed`

    @abstractmethod
    async def load_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        """Load the documents for `keys`; missing ones come back empty at version 0."""

    @abstractmethod
    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        """Write every dirty document, each only if nobody wrote it since it was loaded (else ConflictError)."""

    @abstractmethod
    async def clear_pending(self, docs: Iterable[Doc]) -> None:
        """Clear, in one round trip, published outputs that other processes would otherwise send again (those
        a batch inherited); only where nobody has written since (a newer version keeps its own)."""

    @abstractmethod
    async def increment(self, key: str, by: int) -> int:
        """Atomically add `by` (at least 1) to the counter document `key` (created at 0) and return the new
        value: unique across any number of replicas."""

    @abstractmethod
    async def mark(self, marker: Marker) -> None:
        """Store a relay marker (before the documents it names are written)."""

    @abstractmethod
    async def unmark(self, marker_id: str, due: float) -> None:
        """Delete a relay marker, unless someone has re-armed it since (its `due` is no longer `due`)."""

    @abstractmethod
    async def due_markers(self, now: float, limit: int) -> list[Marker]:
        """Up to `limit` relay markers due at `now`, earliest first."""

    @abstractmethod
    async def claim(self, marker: Marker, until: float) -> bool:
        """Take a due marker for the relay until `until` (its new `due`); False if another process took it first."""

    @abstractmethod
    async def scan(self, prefix: str) -> dict[str, dict[str, Any] | None]:
        """The stored state of every document whose key starts with `prefix` (operators' views and checks,
        not the hot path: on FerretDB it reads the whole collection)."""

    def _loaded(self, raw: dict[str, Any]) -> Doc:
        """A stored document as loaded: pending outputs this process has already published are left out."""
        key, version = raw["_id"], raw.get("v", 0)
        pending = [] if self.published.get(key) == version else raw.get("pending", [])
        return Doc(key, version, raw.get("state"), raw.get("inbox", []), pending, inherited=bool(pending))

    @staticmethod
    def _body(d: Doc, with_id: bool = True) -> dict[str, Any]:
        body = {"v": d.version + 1, "state": d.state, "inbox": d.inbox, "pending": d.pending}
        return {"_id": d.key, **body} if with_id else body

    def remember(self, docs: Iterable[Doc]) -> None:
        """Mark these document versions' pending outputs as published by this process (before the publish:
        `forget` them if it fails), so a later load of the same version skips them."""
        for d in docs:
            self.published[d.key] = d.version
            self.published.move_to_end(d.key)
        while len(self.published) > PUBLISHED_MEMORY:
            self.published.popitem(last=False)

    def note_landed(self, key: str, version: int, note: Any) -> None:
        """Remember a service's note on the version of `key` that this process wrote in a batch whose every
        document was stored (e.g. what of it the batch's other documents now carry)."""
        self.landed[key] = (version, note)
        self.landed.move_to_end(key)
        while len(self.landed) > LANDED_MEMORY:
            self.landed.popitem(last=False)

    def landed_note(self, key: str, version: int) -> Any:
        """The note on `key` if the document is still at the version noted (nobody wrote it since), else None."""
        noted = self.landed.get(key)
        return noted[1] if noted is not None and noted[0] == version else None

    def forget(self, docs: Iterable[Doc]) -> None:
        """Undo `remember` after a failed publish: the outputs are still to be sent."""
        for d in docs:
            if self.published.get(d.key) == d.version:
                del self.published[d.key]


class DocStore(Store):
    """The per-key documents of one service collection on MongoDB or FerretDB."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        super().__init__()
        self.collection = collection
        self.markers = collection.database[f"{collection.name}_outbox"]  # small: only batches in flight

    async def setup(self) -> None:
        """The index the relay's query uses (on MongoDB; FerretDB scans the small marker collection); the index
        on `state.order_number` that versions before packing created is dropped: `state` is one JSON string
        now, nothing queries the field, and the store kept the index on every write."""
        await self.markers.create_index("due")
        if STALE_INDEX in await self.collection.index_information():
            await self.collection.drop_index(STALE_INDEX)

    async def load_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        """Load the documents for `keys`; missing ones come back empty at version 0."""
        wanted = list(dict.fromkeys(keys))
        docs = {k: Doc(k, 0, None) for k in wanted}
        if wanted:
            # every match in the first reply, with room for one more: a full first batch leaves FerretDB's cursor
            # open and costs an empty getMore; the default first batch (101) costs one for more keys
            async for raw in self.collection.find({"_id": {"$in": wanted}}, batch_size=len(wanted) + 1):
                docs[raw["_id"]] = self._loaded(unpacked(raw))
        return docs

    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        """Write every dirty document, each only if nobody wrote it since it was loaded (else ConflictError)."""
        written = [d for d in docs if d.dirty]
        fresh = [packed(self._body(d)) for d in written if d.version == 0]
        if fresh:
            try:
                await self.collection.insert_many(fresh, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if errors and all(e.get("code") == 11000 for e in errors):
                    raise ConflictError(f"{len(errors)} new document(s) created by another replica") from None
                raise
        stale = [d for d in written if d.version]
        if stale:
            ops = [
                UpdateOne({"_id": d.key, "v": d.version}, {"$set": packed(self._body(d, with_id=False))}) for d in stale
            ]
            result = await self.collection.bulk_write(ops, ordered=False)
            if result.matched_count != len(ops):
                raise ConflictError(f"{len(ops) - result.matched_count} document(s) changed by another replica")
        for d in written:
            d.version += 1
            d.dirty = False
        return written

    async def clear_pending(self, docs: Iterable[Doc]) -> None:
        """Clear, in one round trip, published outputs that other processes would otherwise send again (those
        a batch inherited); only where nobody has written since (a newer version keeps its own)."""
        ops = [UpdateOne({"_id": d.key, "v": d.version}, {"$set": {"pending": []}}) for d in docs]
        if ops:
            await self.collection.bulk_write(ops, ordered=False)

    async def mark(self, marker: Marker) -> None:
        """Store a relay marker (before the documents it names are written)."""
        await self.markers.insert_one(
            {
                "_id": marker.id,
                "due": marker.due,
                "created": marker.created,
                "docs": [{"key": key, "v": version} for key, version in marker.docs],  # FerretDB: no nested arrays
            }
        )

    async def unmark(self, marker_id: str, due: float) -> None:
        """Delete a relay marker, unless someone has re-armed it since."""
        await self.markers.delete_one({"_id": marker_id, "due": due})

    async def due_markers(self, now: float, limit: int) -> list[Marker]:
        """Up to `limit` relay markers due at `now`, earliest first."""
        found = self.markers.find({"due": {"$lte": now}}).sort("due", 1).limit(limit)
        return [
            Marker(raw["_id"], raw["due"], raw["created"], tuple((d["key"], int(d["v"])) for d in raw["docs"]))
            async for raw in found
        ]

    async def claim(self, marker: Marker, until: float) -> bool:
        """Take a due marker until `until`: a compare-and-set on its `due`, so one process wins."""
        result = await self.markers.update_one({"_id": marker.id, "due": marker.due}, {"$set": {"due": until}})
        return result.modified_count == 1

    async def scan(self, prefix: str) -> dict[str, dict[str, Any] | None]:
        """The stored state of every document whose key starts with `prefix`."""
        found = self.collection.find({"_id": {"$regex": f"^{re.escape(prefix)}"}}, {"state": 1})
        return {raw["_id"]: unpacked(raw).get("state") async for raw in found}

    async def increment(self, key: str, by: int) -> int:
        """Atomically add `by` to the counter document `key` (created at 0); the new value."""
        check_increment(key, by)
        doc = await self.collection.find_one_and_update(
            {"_id": key}, {"$inc": {"n": by}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise RuntimeError(f"counter {key!r}: the store returned no document after an upsert")
        return int(doc["n"])


PACKED = ("state", "inbox", "pending")


def packed(body: dict[str, Any]) -> dict[str, Any]:
    """A document as DocStore stores it: its state, inbox and pending outputs each one LZ4-compressed JSON value
    (empty ones as they are). FerretDB 1.x stores every field with a type schema and decodes it field by field: as
    nested documents our order states took twice their size and most of FerretDB's CPU; as JSON strings every
    quote was escaped once more inside FerretDB's own JSON (pending events twice). Compressed, our documents take
    about half the bytes and FerretDB keeps each field as one base64 string without escapes (ADR 0007)."""
    return {k: _pack(v) if k in PACKED and v else v for k, v in body.items()}


def _pack(value: Any) -> Binary:
    return Binary(lz4.block.compress(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)))


def unpacked(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored document read back: `packed`, packed as a JSON string (before compression), or nested documents
    (before packing)."""
    return {k: _unpack(v) if k in PACKED else v for k, v in raw.items()}


def _unpack(value: Any) -> Any:
    if isinstance(value, bytes):
        return orjson.loads(lz4.block.decompress(value))
    return orjson.loads(value) if isinstance(value, str) else value


def check_increment(key: str, by: int) -> None:
    """Refuse an increment below 1, naming the counter."""
    if by < 1:
        raise ValueError(f"increment counter {key!r} by {by}: the increment must be at least 1")


class Stage:
    """What one message's handler has recorded so far, with each document as it was before: a handler that
    fails is undone, so none of its writes or events join the batch (issue 17: per-message isolation)."""

    def __init__(self) -> None:
        self.before: dict[int, tuple[Doc, tuple[Any, ...]]] = {}

    def note(self, doc: Doc) -> None:
        """Keep `doc` as it is now, unless this message has already changed it."""
        if id(doc) not in self.before:
            self.before[id(doc)] = (doc, (doc.state, doc.view, doc.inbox, doc.pending, doc.dirty))

    def undo(self) -> None:
        """Put every document this message changed back as it was before the message."""
        for doc, (state, view, inbox, pending, dirty) in self.before.values():
            doc.state, doc.view, doc.inbox, doc.pending, doc.dirty = state, view, inbox, pending, dirty
        self.before.clear()


_STAGE: ContextVar[Stage | None] = ContextVar("orderflow_outbox_stage", default=None)


@contextmanager
def staged() -> Iterator[Stage]:
    """Stage the records made inside the block (by the current task) so that they can be undone."""
    stage = Stage()
    token = _STAGE.set(stage)
    try:
        yield stage
    finally:
        _STAGE.reset(token)


def record(doc: Doc, input_id: str | None, state: dict[str, Any] | None, outputs: Iterable[Outgoing] = ()) -> None:
    """Apply a handler's result to a loaded document (in memory; the batch writes it); `input_id` None when
    another document of the same effect already remembers the input (it keeps this inbox small). Inside
    `staged()` the document's previous content is kept first, to undo the record if the handler fails."""
    stage = _STAGE.get()
    if stage is not None:
        stage.note(doc)
    doc.state, doc.view = state, None
    if input_id is not None:
        doc.inbox = [*doc.inbox, input_id][-INBOX_LIMIT:]
    doc.pending = [*doc.pending, *(o.traced().to_doc() for o in outputs)]
    doc.dirty = True
    faults.recorded()  # chaos scenario 10 may fail the handler here, after it recorded something
