"""Inventory's handlers: skip a duplicate, load, let the domain decide, serve the waiting orders, record (the
batch writes and publishes). Each takes the warehouse preference order (`prefs`), bound in app.py."""

from collections.abc import Iterable

from pydantic import BaseModel

from contracts.internal import OrderApproved, OrderCancelled, StockShipped
from contracts.public import (
    PriorityApproval,
    ProductionUpdated,
    PurchaseOrderUpdated,
    ShortageDecision,
    StockCounted,
    StockReceived,
)
from services.inventory import domain
from services.inventory.store import Repository, View, attach, message_docs
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.status import order_key
from services.runtime.steps import DUPLICATE

StockInput = StockCounted | StockReceived | PurchaseOrderUpdated | ProductionUpdated


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, OrderApproved):  # its substitutes only when it is short (`on_approved`)
        return message_docs([msg.order_key], domain.line_skus(msg))
    if isinstance(msg, OrderCancelled):
        return message_docs([msg.order_key])
    if isinstance(msg, ShortageDecision | PriorityApproval):
        return message_docs([order_key(msg.channel, msg.channel_order_ref)])
    if isinstance(msg, StockShipped):
        return message_docs([msg.order_key], (l.sku for l in msg.lines))
    if isinstance(msg, StockInput):
        return message_docs(skus=[msg.sku])
    return []


async def _record(
    repo: Repository, d: domain.Decision, cause: str, prefs: tuple[str, ...], rec: Incoming, stock_input: bool = False
) -> str:
    """Dead-letter a refused input; else serve the orders waiting for the stock the decision left free (loaded
    here, in the same unit of work) and record it all."""
    if d.dead_letter is not None:
        repo.batch.dead_letter(rec, d.dead_letter)
        return d.outcome
    if d.refill and (waiting := domain.waiting_for(d)):
        d = domain.refilled(d, await repo.view(waiting), cause, prefs, repo.batch.now)
    for answer in d.loose:
        repo.batch.emit(answer)
    await repo.record(cause, d.new_state.orders, d.events, d.new_state.stocks, stock_input)
    return d.outcome


async def on_approved(batch: Batch, msg: OrderApproved, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """Plan an approved order (revision) against the stock; the stock of its lines' substitutes is read only when
    it is short (an order served in full never looks at them)."""
    repo = Repository(batch)
    if await repo.seen(msg.event_id, [msg.order_key]):
        return DUPLICATE
    view = await repo.view([msg.order_key], domain.line_skus(msg))
    if domain.is_short(msg, view.stocks):  # its substitutes may be offered; a priority order may take stock
        every = domain.skus_of(msg)
        view = await repo.view([msg.order_key], every)
        if domain.is_priority(msg):  # the orders it may take stock from
            others = [k for k in await repo.holders(every) if k != msg.order_key]
            orders = {**view.orders, **await repo.orders(others)}
            view = View(orders, attach(view.stocks, orders))
    return await _record(repo, domain.approved(view, msg, prefs, batch.now), msg.event_id, prefs, rec)


async def on_cancelled(batch: Batch, msg: OrderCancelled, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """Release what a cancelled order holds, for the waiting orders."""
    repo = Repository(batch)
    if await repo.seen(msg.event_id, [msg.order_key]):
        return DUPLICATE
    view = await repo.view([msg.order_key])
    return await _record(repo, domain.cancelled(view, msg), msg.event_id, prefs, rec)


async def on_shipped(batch: Batch, msg: StockShipped, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """Consume what a shipment took, once: its order's document remembers it (the stock documents list it
    until that document is stored); for an order inventory never planned, its stock documents remember it."""
    repo, cause, skus = Repository(batch), f"shipped:{msg.shipment_id}", [l.sku for l in msg.lines]
    orders = await repo.orders([msg.order_key])
    known = orders[msg.order_key] is not None
    if await repo.seen(cause, [msg.order_key] if known else [], [] if known else skus):
        return DUPLICATE
    view = View(orders, attach(await repo.stocks(skus), orders))
    for sku in repo.inboxed(cause, skus):  # consumed by an interrupted batch of a version without `shipped`
        view.stocks[sku].shipped[msg.shipment_id] = msg.order_key
    return await _record(repo, domain.shipped(view, msg), cause, prefs, rec, stock_input=not known)


async def on_stock(batch: Batch, msg: StockInput, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """A count, receipt, purchase order or production update of one SKU; its stock document remembers it."""
    repo, cause = Repository(batch), msg.event_id or rec.origin
    if await repo.seen(cause, skus=[msg.sku]):
        return DUPLICATE
    view = await repo.view(skus=[msg.sku])
    if isinstance(msg, StockCounted):
        d = domain.counted(view, msg)
    elif isinstance(msg, StockReceived):
        d = domain.received(view, msg)
    elif isinstance(msg, PurchaseOrderUpdated):
        d = domain.purchase_order(view, msg)
    else:
        d = domain.production(view, msg, prefs)
    return await _record(repo, d, cause, prefs, rec, stock_input=True)


async def on_shortage(batch: Batch, msg: ShortageDecision, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """The customer's shortage decision; refused for an order not awaiting one, or unknown."""
    repo, key = Repository(batch), order_key(msg.channel, msg.channel_order_ref)
    if await repo.seen(msg.command_id, [key]):
        return DUPLICATE
    view = await repo.view([key], [msg.substitute_sku] if msg.substitute_sku else [])
    return await _record(repo, domain.shortage(view, msg, prefs, batch.now), msg.command_id, prefs, rec)


async def on_priority(batch: Batch, msg: PriorityApproval, rec: Incoming, prefs: tuple[str, ...]) -> str:
    """A supervisor's answer to a priority order's request; refused for an order not awaiting one, or unknown."""
    repo, key = Repository(batch), order_key(msg.channel, msg.channel_order_ref)
    if await repo.seen(msg.command_id, [key]):
        return DUPLICATE
    asked = domain.priority_victims((await repo.orders([key]))[key])
    view = await repo.view([key, *asked])
    return await _record(repo, domain.priority(view, msg, prefs, batch.now), msg.command_id, prefs, rec)
