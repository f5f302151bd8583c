"""Review's subscribers: load the typed state, let services.review.domain decide, record (the batch writes it).

`store.record` records a decision: the credit documents (written first) get the change of the order's claim once
per input (`domain.settle`), the order document its new state and the input in its inbox; a numbered order that
claims gets its `number:` document (inserted once) for the invoice that will release the claim."""

from dataclasses import dataclass, field

from contracts.internal import OrderAccepted, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import domain, store
from services.review.domain import Source
from services.review.masterdata import MasterData
from services.review.rules import Policy
from services.review.store import Credit, ReviewOrder
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.status import order_key
from services.runtime.steps import DUPLICATE, Decision, Loaded, load, step


@dataclass
class Progress:
    """Per consumed source ("topic:partition"), the first offset of the latest batch this process began there;
    every record before it has been fully written (see `domain.Source`)."""

    began: dict[str, int] = field(default_factory=dict)

    def at(self, batch: Batch, rec: Incoming) -> Source:
        """Where `rec` was consumed; the first record of its source in this batch marks the batch's start."""
        source = f"{rec.topic}:{rec.partition}"
        seen: set[str] = batch.scratch.setdefault("review_sources", set())
        if source not in seen:
            seen.add(source)
            self.began[source] = rec.offset
        return Source(source, rec.offset, self.began)


async def on_customer(batch: Batch, msg: CustomerUpserted, rec: Incoming, *, memory: MasterData) -> str:
    """Keep the customer's latest record (in memory and stored); it applies to orders reviewed after it."""
    memory.apply(rec.topic, rec.partition, rec.offset, msg)
    return await step(batch, store.CUSTOMERS, msg.customer_id, rec.origin, lambda _: Decision(msg, (), "stored"))


async def on_product(batch: Batch, msg: ProductUpserted, rec: Incoming, *, memory: MasterData) -> str:
    """Keep the product's latest record (in memory and stored); it applies to orders reviewed after it."""
    memory.apply(rec.topic, rec.partition, rec.offset, msg)
    return await step(batch, store.PRODUCTS, msg.sku, rec.origin, lambda _: Decision(msg, (), "stored"))


async def on_accepted(
    batch: Batch, msg: OrderAccepted, rec: Incoming, *, policy: Policy, progress: Progress, memory: MasterData
) -> str:
    """Review an accepted revision against master data (in memory: every replica reads all of it before its
    first review) and the exposure of the customer's other open orders."""
    await memory.ready.wait()
    at = progress.at(batch, rec)
    order = await load(batch, store.ORDERS, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    credit = await load(batch, store.CREDITS, msg.customer_id)
    held = store.held_on(order.state, msg.customer_id)
    others = (credit.state or Credit()).total - domain.counted(credit.state or Credit(), msg.event_id, held)
    customer = memory.customers.get(msg.customer_id)
    known = {line.sku: memory.products[line.sku] for line in msg.lines if line.sku in memory.products}
    decision = domain.review(order.state, msg, customer, known, others, batch.now, policy)
    number = msg.order_number or msg.order_key
    return await _record(batch, msg.event_id, at, number, order, decision, also=msg.customer_id)


async def on_decision(batch: Batch, msg: ReviewDecision, rec: Incoming, *, progress: Progress) -> str:
    """A reviewer approves or rejects a queued order; refused (recording nothing) for an order review does not know."""
    at = progress.at(batch, rec)
    key = order_key(msg.channel, msg.channel_order_ref)
    order = await load(batch, store.ORDERS, key)
    if order.seen(msg.command_id):
        return DUPLICATE
    decision = domain.decide_manual(order.state, msg, batch.now)
    number = order.state.order_number or key if order.state else key
    return await _record(batch, msg.command_id, at, number, order, decision)


async def on_cancelled(batch: Batch, msg: OrderCancelled, rec: Incoming, *, progress: Progress) -> str:
    """A cancelled order leaves the queue and gives its exposure back."""
    at = progress.at(batch, rec)
    order = await load(batch, store.ORDERS, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    number = (order.state.order_number if order.state else None) or msg.order_key
    return await _record(batch, msg.event_id, at, number, order, domain.on_cancelled(order.state, msg))


async def on_invoiced(batch: Batch, msg: InvoiceRequested, rec: Incoming, *, progress: Progress) -> str:
    """An invoiced order no longer counts against its customer's credit; ignored for a number that never
    claimed credit here (nothing is recorded: a redelivery looks again)."""
    at = progress.at(batch, rec)
    key = (await load(batch, store.NUMBERS, msg.order_number)).state
    if key is None:
        return f"ignored: no order {msg.order_number}"
    await store.prefetch_numbered_orders(batch)  # the batch's invoice requests: their orders in one round trip
    order = await load(batch, store.ORDERS, key)
    if order.seen(msg.event_id):
        return DUPLICATE
    if order.state is None:
        return f"ignored: no order {msg.order_number}"
    return await _record(batch, msg.event_id, at, msg.order_number, order, domain.on_invoiced(order.state, msg))


async def _record(
    batch: Batch,
    cause: str,
    at: Source,
    number: str,
    order: Loaded[ReviewOrder],
    decision: Decision[ReviewOrder],
    also: str | None = None,
) -> str:
    """Record the decision (store.record), each credit's claim moved once per input as domain.settle says."""
    return await store.record(
        batch, order, cause, decision, lambda c, held, target: domain.settle(c, cause, number, held, target, at), also
    )
