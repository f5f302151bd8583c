"""Review's subscriber logic: parse -> load -> decide -> record (the batch writes and publishes)."""

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from contracts.internal import OrderAccepted, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import domain, store
from services.review.rules import Policy
from services.runtime.batch import Batch, Handler
from services.runtime.messages import Incoming
from services.runtime.outbox import record
from services.runtime.status import order_key


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, CustomerUpserted):
        return [f"customer:{msg.customer_id}"]
    if isinstance(msg, ProductUpserted):
        return [f"product:{msg.sku}"]
    if isinstance(msg, OrderAccepted):
        customer = [f"customer:{msg.customer_id}", store.credit_key(msg.customer_id)]
        return [f"order:{msg.order_key}", *customer, *(f"product:{l.sku}" for l in msg.lines)]
    if isinstance(msg, InvoiceRequested):
        return [store.credit_key(msg.customer_id)]
    if isinstance(msg, ReviewDecision | OrderCancelled):
        return [f"order:{_key(msg)}"]
    return []


def _key(msg: Any) -> str:
    return order_key(msg.channel, msg.channel_order_ref)


async def on_master_data(batch: Batch, msg: CustomerUpserted | ProductUpserted, rec: Incoming) -> str:
    """Keep the latest customer/product record; applies to orders reviewed after it."""
    key = next(iter(keys(msg, rec)))
    doc = await batch.doc(key)
    record(doc, rec.origin, msg.model_dump(mode="json"), [])
    return f"stored {key}"


def handlers(policy: Policy) -> dict[type[BaseModel], Handler]:
    """Review's handlers, bound to the pricing/credit policy."""

    async def on_accepted(batch: Batch, msg: OrderAccepted, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{msg.order_key}")
        if doc.seen(msg.event_id):
            return "duplicate"
        cust_doc = await batch.doc(f"customer:{msg.customer_id}")
        customer = CustomerUpserted.model_validate(cust_doc.state) if cust_doc.state else None
        products = {}
        for line in msg.lines:
            p = await batch.doc(f"product:{line.sku}")
            if p.state:
                products[line.sku] = ProductUpserted.model_validate(p.state)
        number = msg.order_number or msg.order_key
        credit = await batch.doc(store.credit_key(msg.customer_id))
        exposure = credit.state
        if doc.state and doc.state.get("status") == "approved" and msg.revision > doc.state.get("revision", 0):
            exposure, _ = domain.release(exposure, number)  # the amended revision is reviewed afresh
        if doc.state and doc.state.get("status") == "cancelled":  # a claim an interrupted batch left behind
            exposure, _ = domain.release(exposure, number)
        total, held = domain.exposure_of(exposure)
        decision = domain.review(doc.state, msg, customer, products, total - held.get(number, 0), batch.now, policy)
        if decision.claim_cents is not None:
            exposure = domain.claim(exposure, number, decision.claim_cents)
        if exposure != credit.state:
            record(credit, msg.event_id, exposure, [])
        record(doc, msg.event_id, decision.state if decision.state is not None else doc.state, decision.outputs)
        return f"{decision.outcome} {number}"

    async def on_decision(batch: Batch, msg: ReviewDecision, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{_key(msg)}")
        if doc.seen(msg.command_id):
            return "duplicate"
        decision = domain.decide_manual(doc.state, msg, batch.now)
        if decision.claim_cents is not None and doc.state:
            number = doc.state.get("order_number") or _key(msg)
            credit = await batch.doc(store.credit_key(doc.state["customer_id"]))
            record(credit, msg.command_id, domain.claim(credit.state, number, decision.claim_cents), [])
        record(doc, msg.command_id, decision.state if decision.state is not None else doc.state, decision.outputs)
        return decision.outcome

    async def on_cancelled(batch: Batch, msg: OrderCancelled, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{msg.order_key}")
        if doc.seen(msg.event_id):
            return "duplicate"
        if doc.state and doc.state.get("customer_id"):
            number = doc.state.get("order_number") or msg.order_key
            credit = await batch.doc(store.credit_key(doc.state["customer_id"]))
            record(credit, msg.event_id, domain.release(credit.state, number)[0], [])
        decision = domain.on_cancelled(doc.state, msg)
        record(doc, msg.event_id, decision.state, decision.outputs)
        return "cancelled: exposure released"

    async def on_invoiced(batch: Batch, msg: InvoiceRequested, rec: Incoming) -> str:
        credit = await batch.doc(store.credit_key(msg.customer_id))
        if credit.seen(msg.event_id):
            return "duplicate"
        state, released = domain.release(credit.state, msg.order_number)
        record(credit, msg.event_id, state, [])
        return f"invoiced {msg.order_number}: released {released} cents"

    return {
        CustomerUpserted: on_master_data,
        ProductUpserted: on_master_data,
        OrderAccepted: on_accepted,
        ReviewDecision: on_decision,
        OrderCancelled: on_cancelled,
        InvoiceRequested: on_invoiced,
    }
