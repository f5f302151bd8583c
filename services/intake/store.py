"""The only code that knows intake's documents: their typed state, their keys, and how they are stored.

Two kinds of document in intake's collection: `order:<channel>:<ref>` (an `IntakeOrder`, with the batch's
inbox and outbox) and `seq:<YYYYMMDD>` (that day's order-number counter, taken a block at a time by each process).
"""

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.intake.checks import CheckedOrder
from services.runtime.outbox import Store
from services.runtime.steps import Kind

Collection = AsyncCollection[dict[str, Any]]
ORDER = "order:"
SEQUENCE = "seq:"


@dataclass(frozen=True, slots=True)
class IntakeOrder:
    """Intake's view of one channel order: the last revision received, its status, its number once it has one,
    and the checked order (contact data and address included) once a revision was accepted."""

    revision: int
    status: str
    order_number: str | None = None
    accepted_at: datetime | None = None
    order: CheckedOrder | None = None


def to_doc(state: IntakeOrder) -> dict[str, Any]:
    """The stored form of an order's state (JSON types only)."""
    doc: dict[str, Any] = {"revision": state.revision, "status": state.status, "order_number": state.order_number}
    if state.accepted_at is not None:
        doc["accepted_at"] = state.accepted_at.isoformat()
    if state.order is not None:
        doc["order"] = state.order.model_dump(mode="json")
    return doc


def from_doc(doc: dict[str, Any]) -> IntakeOrder:
    """An order's state as stored by `to_doc`."""
    accepted_at, order = doc.get("accepted_at"), doc.get("order")
    return IntakeOrder(
        revision=int(doc.get("revision", 0)),
        status=str(doc["status"]),
        order_number=doc.get("order_number"),
        accepted_at=datetime.fromisoformat(accepted_at) if accepted_at else None,
        order=CheckedOrder.model_validate(order) if order else None,
    )


ORDERS: Kind[IntakeOrder] = Kind(ORDER, from_doc, to_doc)


async def take_numbers(docs: Store, day: str, count: int) -> list[int]:
    """Atomically take `count` consecutive numbers of `day`'s sequence: unique across any number of replicas."""
    last = await docs.increment(f"{SEQUENCE}{day}", count)
    return list(range(last - count + 1, last + 1))


@dataclass
class Numbers:
    """Order numbers a process takes from the day's sequence ahead of need, `block` at a time (or a batch's worth
    if more): one sequence round trip per block, not per batch. Numbers a process took and did not use (it
    stopped, the day turned, a batch was retried) are skipped: unique across replicas, not gapless."""

    block: int = 64
    day: str = ""
    free: deque[int] = field(default_factory=deque)

    async def take(self, docs: Store, day: str, wanted: int) -> int:
        """The next unused number of `day`; a new block when none is left (`wanted`: the numbers the batch may need)."""
        if day != self.day:
            self.day, self.free = day, deque()
        if not self.free:
            self.free.extend(await take_numbers(docs, day, max(self.block, wanted)))
        return self.free.popleft()
