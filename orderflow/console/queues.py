"""The work queues: which orders each shows, its filters, and keyset paging that stays fast at 100,000 orders
(every query is an equality on `status` plus a range on `since`, served by the (status, since, _id) index)."""

import time
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING

from orderflow.console.readmodel import Doc, ReadModel

# The dashboard's stuck rule (`orderflow dashboard --stuck`): an order past its status's age counts as stuck.
STUCK = "awaiting_customer_decision=2d,awaiting_priority_approval=1d,in_review=1d,needs_clarification=3d"
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


def query(queue: Queue, filters: Filters, thresholds: dict[str, float], now: float) -> dict[str, Any]:
    """The MongoDB filter of a queue with its filters (without the page cursor)."""
    if queue.status is not None:
        clauses: list[dict[str, Any]] = [{"status": queue.status}]
        if filters.older_than_s:
            clauses.append({"since": {"$lt": now - filters.older_than_s}})
    else:
        limit = max(filters.older_than_s, 0.0)
        clauses = [{"$or": [{"status": s, "since": {"$lt": now - max(t, limit)}} for s, t in thresholds.items()]}]
    if filters.channel:
        clauses.append({"channel": filters.channel})
    if filters.customer.strip():
        clauses.append({"terms": filters.customer.strip().lower()})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


async def page(
    model: ReadModel,
    queue: Queue,
    filters: Filters,
    thresholds: dict[str, float],
    after: tuple[float, str] | None = None,
    size: int = PAGE,
    now: float | None = None,
) -> tuple[list[Doc], str | None]:
    """One page of the queue, oldest first, and the cursor of the next page (None on the last)."""
    now = time.time() if now is None else now
    where = query(queue, filters, thresholds, now)
    if after is not None:
        since, key = after
        cursor = {"$or": [{"since": {"$gt": since}}, {"since": since, "_id": {"$gt": key}}]}
        where = {"$and": [where, cursor]}
    rows = [d async for d in model.orders.find(where).sort([("since", ASCENDING), ("_id", ASCENDING)]).limit(size + 1)]
    more = len(rows) > size
    rows = rows[:size]
    return rows, (f"{rows[-1]['since']}|{rows[-1]['_id']}" if more and rows else None)


async def count(model: ReadModel, queue: Queue, thresholds: dict[str, float], now: float | None = None) -> int:
    """How many orders the queue holds, unfiltered."""
    now = time.time() if now is None else now
    return await model.orders.count_documents(query(queue, Filters(), thresholds, now))
