"""Intake's subscriber logic: parse -> load -> decide -> record (the batch writes and publishes)."""

from pydantic import BaseModel

from contracts.public import OrderSubmitted
from contracts.registry import UnreadableMessage
from services.intake import domain, store
from services.runtime.batch import Batch, Handler
from services.runtime.messages import Incoming
from services.runtime.outbox import record


def doc_key(msg: OrderSubmitted, rec: Incoming) -> str | None:
    """The intake document of the submission's channel order."""
    ident = domain.identity(msg)
    return f"order:{ident[0]}:{ident[1]}" if ident else None


async def on_submitted(batch: Batch, msg: OrderSubmitted, rec: Incoming) -> str:
    """Hold, number or ignore one submission; idempotent on channel+reference+revision."""
    key = doc_key(msg, rec)
    if key is None:
        batch.dead_letter(rec, "order.submitted without channel and channel_order_ref: not an order")
        return "dead-lettered: no identity"
    doc = await batch.doc(key)
    cause = domain.submission_id(msg)
    if doc.seen(cause):
        return "duplicate"
    number = None
    if domain.needs_number(doc.state, msg):
        number = domain.format_order_number(batch.now, await _next_number(batch))
    decision = domain.decide(doc.state, msg, batch.now, number)
    record(doc, cause, decision.state if decision.state is not None else doc.state, decision.outputs)
    return decision.outcome


async def _next_number(batch: Batch) -> int:
    """The next order number of the batch's block: one sequence round trip per batch, not per order
    (numbers a batch leaves unused, or takes again on a retry, are skipped: unique, not gapless)."""
    block: list[int] = batch.scratch.setdefault("numbers", [])
    if not block:
        block.extend(await store.take_numbers(batch.store.collection, batch.now.strftime("%Y%m%d"), batch.size))
    return block.pop(0)


def on_unreadable(batch: Batch, rec: Incoming, exc: UnreadableMessage) -> None:
    """Tell the channel its message was invalid, when the message names the channel order."""
    out = domain.invalid_status(exc.raw, exc.reason, rec.origin, batch.now)
    if out is not None:
        batch.emit(out)


HANDLERS: dict[type[BaseModel], Handler] = {OrderSubmitted: on_submitted}
