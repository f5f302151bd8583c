"""The steps every handler shares, written once: load a document as its service's typed state, skip an input
the document has already applied (its inbox), let the domain decide, record the decision in the batch.

A service's `store.py` describes each kind of document it keeps with a `Kind` (its key prefix and how its
stored JSON reads as a typed state and writes back); its domain returns `Decision(new_state, events)`; its
handlers call `step` (one document) or `load` / `save` (several documents, one decision each).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.runtime.batch import Batch
from services.runtime.messages import Outgoing
from services.runtime.outbox import Doc, record

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)

DUPLICATE = "duplicate"  # the outcome of an input a document has already applied


@dataclass(frozen=True)  # no slots: `Decision[T](...)` must work (slots + frozen breaks it in Python 3.11)
class Decision(Generic[S_co]):
    """What a domain decided about one document: its new state (None: the state stays as it is) and the
    events the decision causes, plus the outcome logged for the message."""

    new_state: S_co | None
    events: Sequence[Outgoing] = ()
    outcome: str = ""


@dataclass(frozen=True)  # no slots, like Decision
class Kind(Generic[S]):
    """One kind of document a service keeps: its key prefix and how its stored state reads and writes."""

    prefix: str
    read: Callable[[dict[str, Any]], S]
    write: Callable[[S], dict[str, Any]]

    def key(self, ident: str) -> str:
        """The document key of `ident` (e.g. "order:" + "web:W-1"); an empty identity is refused."""
        if not ident:
            raise ValueError(f"a {self.prefix!r} document needs a non-empty identity")
        return f"{self.prefix}{ident}"


@dataclass(slots=True)
class Loaded(Generic[S]):
    """A document of the batch with its typed state (None: no such document yet)."""

    kind: Kind[S]
    doc: Doc
    state: S | None

    @property
    def key(self) -> str:
        """The document's key."""
        return self.doc.key

    def seen(self, cause: str) -> bool:
        """Whether the document has already applied the input `cause` (a redelivery or a duplicate)."""
        return self.doc.seen(cause)


async def load(batch: Batch, kind: Kind[S], ident: str) -> Loaded[S]:
    """The document `kind.key(ident)` of the batch, its state read as `kind` says (read once per batch and
    kept typed: a second message on the same document in the batch sees the first one's decision)."""
    doc = await batch.doc(kind.key(ident))
    return Loaded(kind, doc, typed(doc, kind))


def typed(doc: Doc, kind: Kind[S]) -> S | None:
    """The document's state as `kind` reads it: the typed view kept since it was last read or decided, else
    read once and kept."""
    if doc.view is not None and doc.view[0] is kind:
        state: S | None = doc.view[1]
    else:
        state = None if doc.state is None else kind.read(doc.state)
        doc.view = (kind, state)
    return state


async def prefetch_linked(batch: Batch, link: Kind[S], target: Callable[[S], str]) -> None:
    """Load in one round trip, once per batch, the documents that the batch's loaded `link` documents name
    (`target`: the key a link's state names), so that handlers following a link do not load one at a time."""
    done: set[str] = batch.scratch.setdefault("prefetched_links", set())
    if link.prefix in done:
        return
    done.add(link.prefix)
    linked = [d.state for k, d in batch.docs.items() if k.startswith(link.prefix) and d.state is not None]
    await batch.prefetch(target(link.read(state)) for state in linked)


def save(batch: Batch, loaded: Loaded[S], cause: str | None, decision: Decision[S]) -> str:
    """Record a decision on its document: the new state, `cause` in the inbox (None when another document of
    the same effect remembers it) and the events in the outbox, written and published with the batch. A
    decision that leaves a document that does not exist as it is (e.g. the refusal of a command for an
    unknown order) records nothing: its events are sent with the batch, and a redelivery decides again
    (same derived event ids). Returns the decision's outcome."""
    if decision.new_state is None and loaded.state is None:
        for event in decision.events:
            batch.emit(event)
        return decision.outcome
    state = loaded.state if decision.new_state is None else decision.new_state
    assert state is not None  # one of the two is set (checked above)
    record(loaded.doc, cause, loaded.kind.write(state), decision.events)
    loaded.doc.view = (loaded.kind, state)
    loaded.state = state
    return decision.outcome


async def step(batch: Batch, kind: Kind[S], ident: str, cause: str, decide: Callable[[S | None], Decision[S]]) -> str:
    """The whole of a one-document handler: load `kind.key(ident)`, answer "duplicate" if it has already
    applied `cause`, else let `decide` (pure: the state, None for no document yet) decide and record it."""
    loaded = await load(batch, kind, ident)
    if loaded.seen(cause):
        return DUPLICATE
    return save(batch, loaded, cause, decide(loaded.state))
