"""The console's read model: its own database (`<MONGODB_DATABASE>_console`), built from the public topics
`orders.status` (every status, the timeline) and `orders.submitted` (customer, entered_by, the keyed form).

Duplicates (the same `event_id` again, at-least-once delivery) are taken once; an older status arriving after
a newer one joins the timeline without changing the order's current status (newest `occurred_at` wins, the
later offset breaks a tie); refusals and ignored duplicates (`details.refused` / `ignored`) never change it.
"""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from contracts.public import STATUSES
from services.runtime.status import repeats_view

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


def _stamp(raw: Any, fallback_ms: int) -> float:
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw).timestamp()
        except ValueError:
            pass
    return fallback_ms / 1000


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
        "at": _stamp(msg.get("occurred_at"), rec.timestamp_ms),
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
            "since": 0.0, "last_event": None, "terms": _terms(key, {})}  # fmt: skip


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
    the newest submission), `events` (the timeline, `_id` = event id) and `sent` (commands and submissions the
    console published, `_id` = command id, so a resubmitted form is sent once)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.orders: AsyncCollection[Doc] = db["orders"]
        self.events: AsyncCollection[Doc] = db["events"]
        self.sent: AsyncCollection[Doc] = db["sent"]

    async def ensure_indexes(self) -> None:
        """The indexes the queues, the search and the timeline read through."""
        await self.orders.create_index([("status", ASCENDING), ("since", ASCENDING), ("_id", ASCENDING)])
        await self.orders.create_index([("terms", ASCENDING)])
        await self.orders.create_index([("since", ASCENDING)])
        await self.events.create_index([("key", ASCENDING), ("at", ASCENDING)])

    async def apply(self, records: Iterable[Record]) -> int:
        """Fold a batch of records (in offset order per partition) into the read model; returns how many new
        status events it took. Replaying a batch changes nothing: events already stored are skipped."""
        records = list(records)
        events = [(rec, ev) for rec in records if rec.topic == "orders.status" and (ev := event_of(rec))]
        seen = {d["_id"] async for d in self.events.find({"_id": {"$in": [ev["_id"] for _, ev in events]}}, {"_id": 1})}
        keys = {ev["key"] for _, ev in events} | {
            rec.key for rec in records if rec.topic == "orders.submitted" and rec.key and _is_submission(rec.value)
        }
        orders = {d["_id"]: d async for d in self.orders.find({"_id": {"$in": sorted(keys)}})}
        changed: set[str] = set()
        fresh: dict[str, Doc] = {}
        for rec in records:
            if rec.topic == "orders.submitted":
                if rec.key and _is_submission(rec.value):
                    order = orders.setdefault(rec.key, new_order(rec.key))
                    if apply_submitted(order, rec.value):
                        changed.add(rec.key)
                continue
            ev = event_of(rec)
            if ev is None or ev["_id"] in seen or ev["_id"] in fresh:
                continue
            fresh[ev["_id"]] = ev
            order = orders.setdefault(ev["key"], new_order(ev["key"]))
            apply_status(order, ev)
            changed.add(ev["key"])
        # the orders first: a crash before the events are stored replays the batch, and the replay finds the
        # events unseen but the orders already past them (an equal position changes nothing)
        if changed:
            now = time.time()
            await self.orders.bulk_write(
                [ReplaceOne({"_id": k}, {**orders[k], "updated": now}, upsert=True) for k in sorted(changed)]
            )
        if fresh:
            try:
                await self.events.insert_many(list(fresh.values()), ordered=False)
            except BulkWriteError as exc:  # stored by an earlier attempt at this batch
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
        return len(fresh)

    async def order(self, key: str) -> Doc | None:
        """The order's document."""
        return await self.orders.find_one({"_id": key})

    async def timeline(self, key: str) -> list[Doc]:
        """Every status of the order, oldest first (refusals included, marked `repeats`)."""
        return [d async for d in self.events.find({"key": key}).sort([("at", ASCENDING), ("offset", ASCENDING)])]

    async def answer(self, ids: set[str]) -> Doc | None:
        """The status whose event id is one of `ids` (the answer to a command), if it has arrived."""
        return await self.events.find_one({"_id": {"$in": sorted(ids)}})

    async def search(self, text: str, limit: int = 50) -> list[Doc]:
        """Orders whose number, channel reference, key, customer id or customer name (or one of its words) is `text`."""
        needle = text.strip().lower()
        if not needle:
            return []
        return [d async for d in self.orders.find({"terms": needle}).sort("since", ASCENDING).limit(limit)]

    async def claim(self, command_id: str, doc: Mapping[str, Any]) -> bool:
        """Record that the console sends `command_id`; False if it was already sent (a double click)."""
        from pymongo.errors import DuplicateKeyError

        try:
            await self.sent.insert_one({"_id": command_id, **doc})
        except DuplicateKeyError:
            return False
        return True

    async def sent_record(self, command_id: str) -> Doc | None:
        """What the console sent under `command_id`."""
        return await self.sent.find_one({"_id": command_id})


def _is_submission(msg: Mapping[str, Any]) -> bool:
    return msg.get("type") == "order.submitted" and isinstance(msg.get("revision"), int)
