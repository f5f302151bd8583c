"""Intake's subscriber: load the typed state, let services.intake.domain decide, record (the batch writes it)."""

from pydantic import BaseModel

from contracts.public import OrderSubmitted
from contracts.registry import UnreadableMessage
from services.intake import domain, store
from services.runtime.batch import Batch, Handler
from services.runtime.messages import Incoming
from services.runtime.status import order_key
from services.runtime.steps import DUPLICATE, load, save


def doc_key(msg: OrderSubmitted, rec: Incoming) -> str | None:
    """The intake document of the submission's channel order."""
    ident = domain.identity(msg)
    return store.ORDERS.key(order_key(*ident)) if ident else None


async def on_submitted(batch: Batch, msg: OrderSubmitted, rec: Incoming) -> str:
    """Hold, number or ignore one submission; idempotent on channel+reference+revision."""
    ident = domain.identity(msg)
    if ident is None:
        batch.dead_letter(rec, "order.submitted without channel and channel_order_ref: not an order")
        return "dead-lettered: no identity"
    order = await load(batch, store.ORDERS, order_key(*ident))
    cause = domain.submission_id(msg)
    if order.seen(cause):
        return DUPLICATE
    sub, number = domain.submission(msg), None
    if domain.needs_number(order.state, sub):
        number = domain.format_order_number(batch.now, await _next_number(batch))
    return save(batch, order, cause, domain.decide(order.state, sub, batch.now, number))


async def _next_number(batch: Batch) -> int:
    """The next order number of the batch's block: one sequence round trip per batch, not per order
    (numbers a batch leaves unused, or takes again on a retry, are skipped: unique, not gapless)."""
    block: list[int] = batch.scratch.setdefault("numbers", [])
    if not block:
        block.extend(await store.take_numbers(batch.store, batch.now.strftime("%Y%m%d"), batch.size))
    return block.pop(0)


def on_unreadable(batch: Batch, rec: Incoming, exc: UnreadableMessage) -> None:
    """Tell the channel its message was invalid, when the message names the channel order."""
    out = domain.invalid_status(exc.raw, exc.reason, rec.origin, batch.now)
    if out is not None:
        batch.emit(out)


HANDLERS: dict[type[BaseModel], Handler] = {OrderSubmitted: on_submitted}
