"""Intake's subscriber: load the typed state, let services.intake.domain decide, record (the batch writes it)."""

from functools import partial

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


async def on_submitted(batch: Batch, msg: OrderSubmitted, rec: Incoming, *, numbers: store.Numbers) -> str:
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
        sequence = await numbers.take(batch.store, f"{batch.now:%Y%m%d}", batch.size)
        number = domain.format_order_number(batch.now, sequence)
    return save(batch, order, cause, domain.decide(order.state, sub, batch.now, number))


def on_unreadable(batch: Batch, rec: Incoming, exc: UnreadableMessage) -> None:
    """Tell the channel its message was invalid, when the message names the channel order."""
    out = domain.invalid_status(exc.raw, exc.reason, rec.origin, batch.now)
    if out is not None:
        batch.emit(out)


def routes(numbers: store.Numbers) -> dict[type[BaseModel], Handler]:
    """Intake's handlers, with the process's block of order numbers."""
    return {OrderSubmitted: partial(on_submitted, numbers=numbers)}
