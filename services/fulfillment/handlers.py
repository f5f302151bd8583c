"""Fulfillment's handlers: load the documents a message touches, let the domain decide, save, emit (the batch
writes and publishes). Wired in `app.py`."""

from datetime import date

from contracts.internal import AllocationReserved, AllocationRevoked, OrderShipping, SupplyNeeded
from contracts.public import OrderCancel, OrderStatus, ProductionUpdated, PurchaseOrderUpdated
from services.fulfillment import domain, store
from services.fulfillment import timeline as tl
from services.fulfillment.store import Order, Timeline
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.status import order_key
from services.runtime.steps import DUPLICATE, Decision, Loaded, S, save, step


def _timeline(order: Order | None) -> Timeline | None:
    return order.timeline if order is not None else None


def _changed(batch: Batch, loaded: Loaded[S], cause: str | None, decision: Decision[S]) -> str:
    """Save a decision that changes the document or emits something; leave the document untouched otherwise."""
    if decision.new_state is None and not decision.events:
        return decision.outcome
    return save(batch, loaded, cause, decision)


async def _name_number(batch: Batch, number: str, key: str, cause: str, claim: bool) -> None:
    alias = await store.alias(batch, number)
    _changed(batch, alias, cause, domain.name_number(alias.state, key, claim=claim))


async def _stop_waiting(batch: Batch, order: Order | None, key: str, cause: str) -> None:
    """The order no longer waits on purchases (reserved or cancelled): drop it from the per-SKU lists."""
    for sku in domain.purchased_skus(order):
        waiting = await store.purchases(batch, sku)
        _changed(batch, waiting, cause, domain.stop_waiting(waiting.state, key))


async def on_shipping(batch: Batch, msg: OrderShipping, rec: Incoming) -> str:
    """Keep the ship-to for the warehouse."""
    return await step(batch, store.ORDERS, msg.order_key, msg.event_id, lambda o: domain.shipping(o, msg))


async def on_reserved(batch: Batch, msg: AllocationReserved, rec: Incoming) -> str:
    """Open one shipment per warehouse of the reservation; the reservation owns the order-number alias."""
    order = await store.order(batch, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    decision = domain.open_shipments(order.state, msg)
    if decision.new_state is not None:
        await _stop_waiting(batch, order.state, msg.order_key, msg.event_id)
        if msg.order_number:  # shipment events follow the alias
            await _name_number(batch, msg.order_number, msg.order_key, msg.event_id, claim=True)
    return f"{save(batch, order, msg.event_id, decision)} {msg.order_number}"


async def on_revoked(batch: Batch, msg: AllocationRevoked, rec: Incoming) -> str:
    """Void the shipments of an allocation inventory took back."""
    outcome = await step(batch, store.ORDERS, msg.order_key, msg.event_id, lambda o: domain.revoke(o, msg))
    return f"{outcome} {msg.order_number}"


async def on_supply(batch: Batch, msg: SupplyNeeded, rec: Incoming) -> str:
    """Send production or purchasing their instruction, and remember which order waits on it."""
    order = await store.order(batch, msg.order_key)
    if order.seen(msg.event_id):
        return DUPLICATE
    decision = domain.need_supply(order.state, msg)
    if decision.new_state is not None and msg.kind == "production":
        link = await store.supply_link(batch, msg.request_id)
        _changed(batch, link, msg.event_id, domain.link_request(link.state, msg.order_key))
    elif decision.new_state is not None:
        waiting = await store.purchases(batch, msg.sku)
        _changed(batch, waiting, msg.event_id, domain.wait_on_purchase(waiting.state, msg))
    return save(batch, order, msg.event_id, decision)


async def _slip(
    batch: Batch, key: str, request_ids: list[str], expected: date, source: dict[str, str], cause: str
) -> str:
    order = await store.order(batch, key)
    if order.seen(cause):
        return DUPLICATE
    last = tl.last_status(_timeline(order.state))
    decision = domain.slip(order.state, last, request_ids, expected, source, cause, batch.now)
    if decision.new_state is None:
        return decision.outcome
    return f"{key}: {save(batch, order, cause, domain.with_own_statuses(order.state, decision))}"


async def on_production(batch: Batch, msg: ProductionUpdated, rec: Incoming) -> str:
    """Production's expected completion for a request fulfillment sent (2.4.1): maybe a slipped promise."""
    if msg.status != "planned":
        return f"production {msg.production_request_id} {msg.status}"  # done: inventory reserves the goods
    link = await store.supply_link(batch, msg.production_request_id)
    if link.state is None:
        return f"ignored: production request {msg.production_request_id} not ours"
    key, source = link.state.order_key, {"production_request_id": msg.production_request_id}
    cause = f"{msg.event_id or rec.origin}:{key}"
    return await _slip(batch, key, [msg.production_request_id], msg.expected_completion, source, cause)


async def on_purchase_order(batch: Batch, msg: PurchaseOrderUpdated, rec: Incoming) -> str:
    """A purchase order's ETA for a SKU that orders wait on after a purchase request (2.4.1)."""
    if msg.status != "open":
        return f"po {msg.po_number} {msg.status}"
    waiting = await store.purchases(batch, msg.sku)
    orders = waiting.state.orders if waiting.state else {}
    if not orders:
        return f"ignored: no order waits on a purchase of {msg.sku}"
    await store.prefetch_orders(batch, orders)
    source, origin = {"po_number": msg.po_number}, msg.event_id or rec.origin
    return "; ".join([await _slip(batch, k, list(orders[k]), msg.eta, source, f"{origin}:{k}") for k in sorted(orders)])


async def on_status(batch: Batch, msg: OrderStatus, rec: Incoming) -> str:
    """Append the status to the order's timeline (the read model behind `orderflow track`, kept in the order
    document: one write for both); apply a cancel that came before the order; restate `cancelled` after a late
    step of an order cancelled here. A status already there (republished, or one fulfillment recorded with the
    decision that published it) writes nothing, unless statuses published before it were recorded after it."""
    key = order_key(msg.channel, msg.channel_order_ref)
    order = await store.order(batch, key)
    timeline = _timeline(order.state)
    first_number = None if timeline and timeline.order_number else msg.order_number
    decision, acted = domain.status_seen(order.state, msg, rec.offset, batch.now)
    outcome = _changed(batch, order, msg.event_id if acted else None, decision)
    appended = decision.new_state is not None and _timeline(decision.new_state) is not timeline
    if first_number and appended:  # never overrides the reservation's alias
        await _name_number(batch, first_number, key, msg.event_id, claim=False)
    return outcome


async def on_shipment_event(batch: Batch, msg: domain.ShipmentEvent, rec: Incoming) -> str:
    """Apply a warehouse/carrier event; an impossible one goes to the dead-letter topic with the reason."""
    number = msg.order_number or rec.key or ""
    alias = await store.alias(batch, number) if number else None
    await store.prefetch_aliased_orders(batch)  # the batch's shipment events: their orders in one round trip
    if alias is None or alias.state is None:
        batch.dead_letter(rec, f"{msg.type} refused: unknown order number {number!r}")
        return "refused: unknown order"
    order, cause = await store.order(batch, alias.state.order_key), domain.shipment_cause(msg)
    if order.seen(cause):
        return DUPLICATE
    try:
        decision = domain.with_own_statuses(order.state, domain.track(order.state, msg, cause, batch.now))
        return save(batch, order, cause, decision)
    except domain.Refused as exc:
        batch.dead_letter(rec, str(exc))
        return "refused"


async def on_cancel(batch: Batch, msg: OrderCancel, rec: Incoming) -> str:
    """Cancel at any stage before dispatch (the compensation follows from the cancellation event); a cancel for
    an order nothing is known of is refused and kept a short while in case it overtook its order."""
    key = order_key(msg.channel, msg.channel_order_ref)
    order = await store.order(batch, key)
    if order.seen(msg.command_id):
        return DUPLICATE
    decision = domain.cancel(order.state, _timeline(order.state), msg, batch.now)
    if decision.new_state is not None:
        await _stop_waiting(batch, order.state, key, msg.command_id)
    return save(batch, order, msg.command_id, domain.with_own_statuses(order.state, decision))
