"""The console's read model: its own database (`<MONGODB_DATABASE>_console`), built from the public topics
`orders.status` (every status, the timeline) and `orders.submitted` (customer, entered_by, the keyed form).
Each order is one document holding its timeline, so an order and the events it has taken are written at once.

Duplicates (the same `event_id` again, at-least-once delivery) are taken once; an older status arriving after
a newer one joins the timeline without changing the order's current status (newest `occurred_at` wins, the
later offset breaks a tie); refusals and ignored duplicates (`details.refused` / `ignored`) never change it.
"""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from contracts.public import STATUSES
from orderflow.console.queues import PAGE, Filters, Queue, QueueIndex
from orderflow.dashboard_state import occurred_time
from services.runtime.status import repeats_view

Doc = dict[str, Any]


@dataclass(frozen=True)
class Record:
    """One message read from a public topic, with where it was read."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Mapping[str, Any]
    timestamp_ms: int


def event_of(rec: Record) -> Doc | None:
    """The timeline entry of a status message (None when it is no readable status)."""
    msg = rec.value
    if msg.get("status") not in STATUSES or not isinstance(msg.get("event_id"), str):
        return None
    raw = msg.get("details")
    details: dict[str, Any] = raw if isinstance(raw, dict) else {}
    key = rec.key or f"{msg.get('channel')}:{msg.get('channel_order_ref')}"
    return {
        "_id": msg["event_id"],
        "key": key,
        "status": msg["status"],
        "at": occurred_time(msg, rec.timestamp_ms),
        "occurred_at": msg.get("occurred_at"),
        "revision": msg.get("revision"),
        "order_number": msg.get("order_number"),
        "reasons": [r for r in msg.get("reasons") or [] if isinstance(r, dict)],
        "promise_date": msg.get("promise_date"),
        "details": details,
        "decided_by": msg.get("decided_by"),
        "repeats": repeats_view(details),
        "offset": rec.offset,
    }


def new_order(key: str) -> Doc:
    """An order the read model has not seen a status for yet."""
    channel, _, ref = key.partition(":")
    return {"_id": key, "channel": channel, "channel_order_ref": ref, "status": None, "at": 0.0, "offset": -1,
            "since": 0.0, "last_event": None, "timeline": [], "terms": _terms(key, {})}  # fmt: skip


def _terms(key: str, order: Mapping[str, Any]) -> list[str]:
    """What a search matches exactly (lower case): key, reference, order number, customer id, name and its words."""
    _, _, ref = key.partition(":")
    name = str(order.get("customer_name") or "")
    values = [key, ref, order.get("order_number"), order.get("customer_id"), name, *name.split()]
    return sorted({str(v).strip().lower() for v in values if v and str(v).strip()})


def apply_status(order: Doc, event: Doc) -> bool:
    """Fold one new (not yet seen) status event into the order; True if the order's current view changed.
    The newest `occurred_at` wins (a later offset breaks a tie); restating the current status keeps the time
    the order entered it; a refusal or ignored duplicate only joins the timeline."""
    order["last_event"] = event["_id"]  # what the order page polls for (a replay sets the same)
    if event.get("order_number") and not order.get("order_number"):
        order["order_number"] = event["order_number"]
        order["terms"] = _terms(order["_id"], order)
    if event["repeats"] or (event["at"], event["offset"]) <= (order.get("at", 0.0), order.get("offset", -1)):
        return False
    order["since"] = order["since"] if order.get("status") == event["status"] else event["at"]
    order.update(
        status=event["status"],
        at=event["at"],
        offset=event["offset"],
        revision=event["revision"] if event["revision"] is not None else order.get("revision"),
        reasons=event["reasons"],
        details=event["details"],
        promise_date=event["promise_date"],
        decided_by=event["decided_by"],
    )
    return True


def apply_submitted(order: Doc, msg: Mapping[str, Any]) -> bool:
    """Keep the newest submitted revision (what a correction starts from) and who the customer is."""
    revision = msg.get("revision")
    if not isinstance(revision, int) or revision < int(order.get("submitted", {}).get("revision") or 0):
        return False
    body = {k: v for k, v in msg.items() if not k.startswith("_")}
    raw = body.get("customer")
    customer: dict[str, Any] = raw if isinstance(raw, dict) else {}
    order.update(
        submitted=body,
        customer_id=customer.get("customer_id"),
        customer_name=customer.get("name"),
        entered_by=body.get("entered_by"),
    )
    order["terms"] = _terms(order["_id"], order)
    return True


class ReadModel:
    """The console's collections: `orders` (one document per order: current status, since when, search terms,
    the newest submission and the whole timeline, each event under its event id), `rows` (per order only what
    the queues need, read once at start into the in-memory `QueueIndex`), `sent` (commands and submissions the
    console published, `_id` = command id, so a resubmitted form is sent once).

    Every read goes by `_id`: FerretDB, the dev/CI store, serves nothing else from an index."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.orders: AsyncCollection[Doc] = db["orders"]
        self.rows: AsyncCollection[Doc] = db["rows"]
        self.sent: AsyncCollection[Doc] = db["sent"]
        self.index = QueueIndex()

    async def load(self) -> int:
        """Build the in-memory queue index from the stored rows; returns how many orders it holds."""
        index = QueueIndex()
        async for row in self.rows.find({}):
            index.put(row)
        self.index = index
        return len(index.entries)

    async def apply(self, records: Iterable[Record]) -> int:
        """Fold a batch of records (in offset order per partition) into the read model; returns how many new
        status events it took. An event already in its order's timeline is skipped, so a replayed batch (a crash
        before the offsets were committed) changes nothing."""
        records = list(records)
        wanted = {ev["key"] for rec in records if rec.topic == "orders.status" and (ev := event_of(rec))} | {
            rec.key for rec in records if rec.topic == "orders.submitted" and rec.key and _is_submission(rec.value)
        }
        orders = {d["_id"]: d async for d in self.orders.find({"_id": {"$in": sorted(wanted)}})}
        changed: set[str] = set()
        taken = 0
        for rec in records:
            if rec.topic == "orders.submitted":
                if rec.key and _is_submission(rec.value):
                    order = orders.setdefault(rec.key, new_order(rec.key))
                    if apply_submitted(order, rec.value):
                        changed.add(rec.key)
                continue
            ev = event_of(rec)
            if ev is None:
                continue
            order = orders.setdefault(ev["key"], new_order(ev["key"]))
            if any(e["_id"] == ev["_id"] for e in order["timeline"]):
                continue  # a duplicate: the same event delivered again
            order["timeline"].append(ev)
            apply_status(order, ev)
            changed.add(ev["key"])
            taken += 1
        if changed:
            now = time.time()
            # rows first: a crash before the orders are written replays the batch, which recomputes the same rows
            await self.rows.bulk_write([ReplaceOne({"_id": k}, row(orders[k]), upsert=True) for k in sorted(changed)])
            await self.orders.bulk_write(
                [ReplaceOne({"_id": k}, {**orders[k], "updated": now}, upsert=True) for k in sorted(changed)]
            )
            for k in changed:
                self.index.put(row(orders[k]))
        return taken

    async def order(self, key: str) -> Doc | None:
        """The order's document."""
        return await self.orders.find_one({"_id": key})

    async def documents(self, keys: list[str]) -> list[Doc]:
        """The orders' documents in the order of `keys` (those not found left out)."""
        brief = {"timeline": 0, "submitted.lines": 0}
        found = {d["_id"]: d async for d in self.orders.find({"_id": {"$in": keys}}, brief)}
        return [found[k] for k in keys if k in found]

    async def page(
        self,
        queue: Queue,
        filters: Filters,
        thresholds: dict[str, float],
        after: tuple[float, str] | None = None,
        size: int = PAGE,
        now: float | None = None,
    ) -> tuple[list[Doc], str | None]:
        """One page of the queue, oldest first, and the cursor of the next page (None on the last)."""
        keys, more = self.index.keys(queue, filters, thresholds, after, size, time.time() if now is None else now)
        return await self.documents(keys), more

    def count(self, queue: Queue, thresholds: dict[str, float], now: float | None = None) -> int:
        """How many orders the queue holds, unfiltered."""
        return self.index.count(queue, thresholds, time.time() if now is None else now)

    async def search(self, text: str, limit: int = 50) -> list[Doc]:
        """Orders whose number, channel reference, key, customer id or customer name (or one of its words) is `text`."""
        keys = sorted(self.index.search(text), key=lambda k: (self.index.entries[k].since, k))[:limit]
        return await self.documents(keys)

    @staticmethod
    def timeline(order: Doc) -> list[Doc]:
        """Every status of the order, oldest first (refusals included, marked `repeats`)."""
        return sorted(order.get("timeline") or [], key=lambda e: (e["at"], e["offset"]))

    @staticmethod
    def answer(order: Doc | None, ids: set[str]) -> Doc | None:
        """The status in the order's timeline whose event id is one of `ids` (a command's answer), if it came."""
        return next((e for e in (order or {}).get("timeline") or [] if e["_id"] in ids), None)

    async def claim(self, command_id: str, doc: Mapping[str, Any]) -> bool:
        """Record that the console sends `command_id`; False if it was already sent (a double click)."""
        try:
            await self.sent.insert_one({"_id": command_id, **doc})
        except DuplicateKeyError:
            return False
        return True

    async def release(self, command_id: str) -> None:
        """Forget a claim whose message could not be published, so the person can try again."""
        await self.sent.delete_one({"_id": command_id})

    async def sent_record(self, command_id: str) -> Doc | None:
        """What the console sent under `command_id`."""
        return await self.sent.find_one({"_id": command_id})


def row(order: Mapping[str, Any]) -> Doc:
    """What the queues need of an order."""
    return {k: order.get(k) for k in ("_id", "status", "since", "channel", "terms")}


def _is_submission(msg: Mapping[str, Any]) -> bool:
    return msg.get("type") == "order.submitted" and isinstance(msg.get("revision"), int)
