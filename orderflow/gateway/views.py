"""The gateway's read model of `orders.status` (collection `orders`) and its record of accepted submissions
(collection `submissions`), both in the gateway's own database.

One document per order key holds the latest status that changes the order: answers to commands and
duplicates (`details.refused`, `details.ignored`) restate the sender's view and are skipped. Statuses of one
key arrive in order on one partition; each document keeps the (partition, offset) it was built from and is
only replaced by a later one, so a replayed batch writes nothing new."""

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from contracts.public import OrderStatus

Collection = AsyncCollection[dict[str, Any]]
MAX_CLAIMS = 500  # submissions recorded in one insert
DUPLICATE_KEY = 11000


def order_key(channel: str, ref: str) -> str:
    """The key the contract gives every message about one order."""
    return f"{channel}:{ref}"


def changes_order(status: OrderStatus) -> bool:
    """Whether a status is the order's own step (not an answer restating the sender's view)."""
    return not (status.details.get("refused") or status.details.get("ignored"))


def view_of(status: OrderStatus, partition: int, offset: int) -> dict[str, Any]:
    """The stored document for an order's latest status."""
    body = status.model_dump(mode="json")
    return {
        "_id": order_key(status.channel, status.channel_order_ref),
        "pos": [partition, offset],
        **{k: body[k] for k in ("channel", "channel_order_ref", "revision", "order_number", "status")},
        **{k: body[k] for k in ("reasons", "promise_date", "details", "occurred_at", "event_id")},
    }


class Views:
    """Reads and writes of the two collections, and in-process wake-ups for long-polling readers."""

    def __init__(self, orders: Collection, submissions: Collection) -> None:
        self.orders, self.submissions = orders, submissions
        self.changed = asyncio.Condition()
        self._claims: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any] | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, statuses: Iterable[tuple[int, int, OrderStatus]]) -> int:
        """Store the latest order-changing status per key among (partition, offset, status); returns writes."""
        latest: dict[str, dict[str, Any]] = {}
        for partition, offset, status in statuses:
            if changes_order(status):
                doc = view_of(status, partition, offset)
                latest[doc["_id"]] = doc
        if not latest:
            return 0
        stored = {d["_id"]: d["pos"] async for d in self.orders.find({"_id": {"$in": list(latest)}}, {"pos": 1})}
        writes = [
            ReplaceOne({"_id": key}, doc, upsert=True)
            for key, doc in latest.items()
            if key not in stored or _newer(doc["pos"], stored[key])
        ]
        if writes:
            await self.orders.bulk_write(writes, ordered=False)
            async with self.changed:
                self.changed.notify_all()
        return len(writes)

    async def get(self, channel: str, ref: str) -> dict[str, Any] | None:
        """The order's latest status document, else its accepted submission, else None."""
        key = order_key(channel, ref)
        doc = await self.orders.find_one({"_id": key}, {"pos": 0})
        if doc is not None:
            return doc
        submitted = await self.submissions.find_one({"key": key}, sort=[("accepted_at", -1)])
        if submitted is None:
            return None
        return {"_id": key, "channel": channel, "channel_order_ref": ref, "revision": submitted["revision"]}

    async def wait_change(self, channel: str, ref: str, since: str | None, seconds: float) -> dict[str, Any] | None:
        """The order's document once its event id differs from `since`, or as it is after `seconds`.

        Woken by this process's status reader; re-read every half second for statuses another replica stored."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            doc = await self.get(channel, ref)
            left = deadline - asyncio.get_running_loop().time()
            if (doc or {}).get("event_id") != since or left <= 0:
                return doc
            async with self.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), min(0.5, left))

    async def claim(self, key: str, revision: Any, body_digest: str) -> dict[str, Any] | None:
        """Record a submission of this order key and revision; None when it is the first, else the record of
        the earlier one (its body's digest tells a repeat from a conflicting body).

        Claims made while a write is in flight go to the store together in one unordered insert."""
        doc = {
            "_id": _submission_id(key, revision),
            "key": key,
            "revision": revision,
            "sha256": body_digest,
            "accepted_at": datetime.now(UTC),
        }
        answer: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._claims.append((doc, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_claims())
        return await answer

    async def _write_claims(self) -> None:
        while self._claims:
            batch, self._claims = self._claims[:MAX_CLAIMS], self._claims[MAX_CLAIMS:]
            try:
                taken = await self._insert([doc for doc, _ in batch])
            except PyMongoError as exc:
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            earlier = [doc["_id"] for i, (doc, _) in enumerate(batch) if i not in taken]
            found = {d["_id"]: d async for d in self.submissions.find({"_id": {"$in": earlier}})} if earlier else {}
            for i, (doc, answer) in enumerate(batch):
                if not answer.done():
                    answer.set_result(None if i in taken else found.get(doc["_id"], doc))

    async def _insert(self, docs: list[dict[str, Any]]) -> set[int]:
        """Insert what is new; the indexes of the documents inserted (the others' ids were taken)."""
        try:
            await self.submissions.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return set(range(len(docs))) - {e["index"] for e in errors}
        return set(range(len(docs)))

    async def release(self, key: str, revision: Any) -> None:
        """Forget a claim whose message Kafka did not acknowledge (best effort: a repeat is published anyway)."""
        await self.submissions.delete_one({"_id": _submission_id(key, revision)})


def _submission_id(key: str, revision: Any) -> str:
    return f"{key}#{revision!r}"


def _newer(pos: list[int], than: list[int]) -> bool:
    """A later record of the same partition; a record of another partition (topic re-partitioned) also wins."""
    return pos[0] != than[0] or pos[1] > than[1]
