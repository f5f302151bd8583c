"""The work queues: which orders each shows, its filters, and keyset paging that stays fast at 100,000 orders."""

import bisect
import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orderflow import dashboard_state

# The dashboard's stuck rule (`orderflow dashboard --stuck`): an order past its status's age counts as stuck.
STUCK = dashboard_state.STUCK
PAGE = 50


@dataclass(frozen=True)
class Queue:
    """A queue: its title, the status it lists (None: the stuck orders) and what its extra column shows."""

    name: str
    title: str
    status: str | None
    shows: str


QUEUES: dict[str, Queue] = {
    q.name: q
    for q in (
        Queue("clarification", "Needs clarification", "needs_clarification", "reasons and contact"),
        Queue("review", "In review", "in_review", "the rule results that put it there"),
        Queue("shortage", "Awaiting customer decision", "awaiting_customer_decision", "options, promises, substitutes"),
        Queue("priority", "Awaiting priority approval", "awaiting_priority_approval", "who loses what"),
        Queue("exceptions", "Delivery exceptions", "delivery_exception", "what happened to the shipment"),
        Queue("stuck", "Stuck orders", None, "status and how long past its limit"),
    )
}


@dataclass(frozen=True)
class Filters:
    """A queue's filters: channel, an exact search term (order number, reference, customer), minimum age."""

    channel: str = ""
    customer: str = ""
    older_than_s: float = 0.0


def parse_after(raw: str) -> tuple[float, str] | None:
    """The keyset cursor `since|key` of the next page; ValueError naming what is wrong."""
    if not raw:
        return None
    since, sep, key = raw.partition("|")
    try:
        value = float(since)
    except ValueError:
        raise ValueError(f"after must be 'since|key' with a number before the bar, got {raw!r}") from None
    if not sep or not key:
        raise ValueError(f"after must be 'since|key', got {raw!r}")
    return value, key


@dataclass
class _Entry:
    status: str | None
    since: float
    channel: str
    terms: tuple[str, ...]


@dataclass
class QueueIndex:
    """The read model's queues in memory: per status the orders sorted by (since, key), and the search terms.

    FerretDB (the dev/CI store) serves only `_id` lookups from an index: a filter or sort on any other field
    scans the collection. So the pages are chosen here (each a bisect and a short walk) and their documents read
    by `_id`; built from the `orders` collection at start, kept current by the read model as it applies."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    by_status: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    by_term: dict[str, set[str]] = field(default_factory=dict)

    def put(self, doc: Mapping[str, Any]) -> None:
        """Take an order document's current status, age, channel and terms (replacing what was known)."""
        key = str(doc["_id"])
        old = self.entries.get(key)
        new = _Entry(doc.get("status"), float(doc.get("since") or 0.0), str(doc.get("channel") or ""),
                     tuple(doc.get("terms") or ()))  # fmt: skip
        if old is not None:
            if old.status is not None:
                rows = self.by_status[old.status]
                at = bisect.bisect_left(rows, (old.since, key))
                if at < len(rows) and rows[at] == (old.since, key):
                    del rows[at]
            for term in set(old.terms) - set(new.terms):
                self.by_term.get(term, set()).discard(key)
        if new.status is not None:
            bisect.insort(self.by_status.setdefault(new.status, []), (new.since, key))
        for term in new.terms:
            self.by_term.setdefault(term, set()).add(key)
        self.entries[key] = new

    def _rows(
        self, queue: Queue, filters: Filters, thresholds: dict[str, float], after: tuple[float, str] | None, now: float
    ) -> Iterator[tuple[float, str]]:
        """The queue's (since, key) pairs after the cursor, oldest first, the age filter applied."""
        if queue.status is not None:
            rows = self.by_status.get(queue.status, [])
            end = bisect.bisect_left(rows, (now - filters.older_than_s, "")) if filters.older_than_s else len(rows)
            start = bisect.bisect_right(rows, after) if after is not None else 0
            return (rows[i] for i in range(start, end))
        parts = []
        for status, limit in thresholds.items():
            rows = self.by_status.get(status, [])
            parts.append(rows[: bisect.bisect_left(rows, (now - max(limit, filters.older_than_s), ""))])
        return heapq.merge(*parts)

    def keys(
        self,
        queue: Queue,
        filters: Filters,
        thresholds: dict[str, float],
        after: tuple[float, str] | None,
        size: int,
        now: float,
    ) -> tuple[list[str], str | None]:
        """The keys of one page of the queue, oldest first, and the cursor of the next page (None on the last)."""
        term = filters.customer.strip().lower()
        matching = self.by_term.get(term, set()) if term else None
        out: list[tuple[float, str]] = []
        for since, key in self._rows(queue, filters, thresholds, after, now):
            if after is not None and (since, key) <= after:
                continue
            if filters.channel and self.entries[key].channel != filters.channel:
                continue
            if matching is not None and key not in matching:
                continue
            out.append((since, key))
            if len(out) > size:
                break
        more = len(out) > size
        out = out[:size]
        return [k for _, k in out], (f"{out[-1][0]}|{out[-1][1]}" if more and out else None)

    def count(self, queue: Queue, thresholds: dict[str, float], now: float) -> int:
        """How many orders the queue holds, unfiltered."""
        if queue.status is not None:
            return len(self.by_status.get(queue.status, []))
        return sum(bisect.bisect_left(self.by_status.get(s, []), (now - limit, "")) for s, limit in thresholds.items())

    def search(self, text: str) -> set[str]:
        """The orders one of whose search terms is `text` (lower-cased)."""
        return set(self.by_term.get(text.strip().lower(), set()))
