"""Review's subscribers: load the typed state, let services.review.domain decide, record (the batch writes it)."""

from contracts.internal import OrderAccepted, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import domain, store
from services.review.domain import OrderCredit
from services.review.rules import Policy
from services.review.store import Credit, ReviewOrder
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.status import order_key
from services.runtime.steps import DUPLICATE, Decision, Loaded, load, save, step


async def on_customer(batch: Batch, msg: CustomerUpserted, rec: Incoming) -> str:
    """Keep the customer's latest record; it applies to orders reviewed after it."""
    return await step(batch, store.CUSTOMERS, msg.customer_id, rec.origin, lambda _: Decision(msg, (), "stored"))


async def on_product(batch: Batch, msg: ProductUpserted, rec: Incoming) -> str:
    """Keep the product's latest record; it applies to orders reviewed after it."""
    return await step(batch, store.PRODUCTS, msg.sku, rec.origin, lambda _: Decision(msg, (), "stored"))


async def on_accepted(batch: Batch, msg: OrderAccepted, rec: Incoming, *, policy: Policy) -> str:
    """Review an accepted revision against master data and the customer's open exposure."""
    order = await load(batch, store.ORDERS, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    credit = await load(batch, store.CREDITS, msg.customer_id)
    customer = (await load(batch, store.CUSTOMERS, msg.customer_id)).state
    products = [(await load(batch, store.PRODUCTS, line.sku)).state for line in msg.lines]
    known = {p.sku: p for p in products if p is not None}
    decision = domain.review(OrderCredit(order.state, credit.state), msg, customer, known, batch.now, policy)
    return _save(batch, msg.event_id, order, credit, decision)


async def on_decision(batch: Batch, msg: ReviewDecision, rec: Incoming) -> str:
    """A reviewer approves or rejects a queued order; refused (recording nothing) for an order review does not know."""
    order = await load(batch, store.ORDERS, order_key(msg.channel, msg.channel_order_ref))
    if order.seen(msg.command_id):
        return DUPLICATE
    credit = await _credit_of(batch, order.state)
    decision = domain.decide_manual(OrderCredit(order.state, credit.state if credit else None), msg, batch.now)
    return _save(batch, msg.command_id, order, credit, decision)


async def on_cancelled(batch: Batch, msg: OrderCancelled, rec: Incoming) -> str:
    """A cancelled order leaves the queue and gives its exposure back."""
    order = await load(batch, store.ORDERS, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    credit = await _credit_of(batch, order.state)
    decision = domain.on_cancelled(OrderCredit(order.state, credit.state if credit else None), msg)
    return _save(batch, msg.event_id, order, credit, decision)


async def on_invoiced(batch: Batch, msg: InvoiceRequested, rec: Incoming) -> str:
    """An invoiced order no longer counts against its customer's credit."""
    return await step(batch, store.CREDITS, msg.customer_id, msg.event_id, lambda c: domain.on_invoiced(c, msg))


async def _credit_of(batch: Batch, order: ReviewOrder | None) -> Loaded[Credit] | None:
    """The credit of the order's customer, when review knows the order and its customer."""
    return await load(batch, store.CREDITS, order.customer_id) if order and order.customer_id else None


def _save(
    batch: Batch, cause: str, order: Loaded[ReviewOrder], credit: Loaded[Credit] | None, decision: Decision[OrderCredit]
) -> str:
    """Record the credit first when it changed, then the order (its new state, or as it was) with the events."""
    new = decision.new_state
    assert new is not None  # review's decisions always say both parts
    if credit is not None and new.credit is not None and new.credit != (credit.state or Credit()):
        save(batch, credit, cause, Decision(new.credit))
    changed = None if new.order is order.state else new.order
    return save(batch, order, cause, Decision(changed, decision.events, decision.outcome))
