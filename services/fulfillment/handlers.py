"""Fulfillment's subscriber logic: parse -> load -> decide -> record (the batch writes and publishes)."""

from collections.abc import Iterable
from datetime import date
from typing import Any

from pydantic import BaseModel

from contracts.internal import AllocationReserved, AllocationRevoked, OrderShipping, SupplyNeeded
from contracts.public import (
    OrderCancel,
    OrderStatus,
    ProductionUpdated,
    PurchaseOrderUpdated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    ShipmentPacked,
    ShipmentPicked,
)
from services.fulfillment import domain, timeline
from services.runtime.batch import Batch, Handler
from services.runtime.ids import derive_id
from services.runtime.messages import Incoming
from services.runtime.outbox import Doc, record
from services.runtime.status import order_key

SHIPMENT_EVENTS = (ShipmentPicked, ShipmentPacked, ShipmentDispatched, ShipmentDelivered, ShipmentException)


def _number(msg: BaseModel, rec: Incoming) -> str:
    return getattr(msg, "order_number", None) or rec.key or ""


def _supply_link(request_id: str) -> str:
    """The document naming the order a production request was made for."""
    return f"supply:{request_id}"


def _purchases(sku: str) -> str:
    """The document listing the orders waiting on a purchase of `sku` (purchase orders name no request)."""
    return f"purchase:{sku}"


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, SupplyNeeded):
        link = _supply_link(msg.request_id) if msg.kind == "production" else _purchases(msg.sku)
        return [f"order:{msg.order_key}", link]
    if isinstance(msg, AllocationReserved):
        return [f"order:{msg.order_key}", *([timeline.alias(msg.order_number)] if msg.order_number else [])]
    if isinstance(msg, OrderShipping | AllocationRevoked):
        return [f"order:{msg.order_key}"]
    if isinstance(msg, OrderCancel):
        return [f"order:{order_key(msg.channel, msg.channel_order_ref)}"]
    if isinstance(msg, SHIPMENT_EVENTS):
        return [timeline.alias(_number(msg, rec))]
    if isinstance(msg, OrderStatus):  # the alias is written with the first numbered status: `received`
        key = order_key(msg.channel, msg.channel_order_ref)
        numbered = [msg.order_number] if msg.order_number and msg.status == "received" else []
        return [timeline.key(key), f"order:{key}", *(timeline.alias(n) for n in numbered)]
    if isinstance(msg, ProductionUpdated):
        return [_supply_link(msg.production_request_id)]
    if isinstance(msg, PurchaseOrderUpdated):
        return [_purchases(msg.sku)]
    return []


async def on_shipping(batch: Batch, msg: OrderShipping, rec: Incoming) -> str:
    """Keep the ship-to for the warehouse."""
    doc = await batch.doc(f"order:{msg.order_key}")
    base = {
        "channel": msg.channel,
        "channel_order_ref": msg.channel_order_ref,
        "revision": msg.revision,
        "order_number": msg.order_number,
    }
    record(doc, msg.event_id, domain.shipping(doc.state, msg.order_key, msg.ship_to, base), [])
    return f"ship-to stored {msg.order_number}"


async def on_reserved(batch: Batch, msg: AllocationReserved, rec: Incoming) -> str:
    """Open one shipment per warehouse of the reservation."""
    doc = await batch.doc(f"order:{msg.order_key}")
    if doc.seen(msg.event_id):
        return "duplicate"
    result = domain.open_shipments(doc.state, msg)
    if result.state is not None:
        await _unlink_purchases(batch, doc.state, msg.order_key, msg.event_id)
    record(doc, msg.event_id, result.state if result.state is not None else doc.state, result.outputs)
    if result.state is not None and msg.order_number:
        alias = await batch.doc(timeline.alias(msg.order_number))
        if (alias.state or {}).get("order_key") != msg.order_key:  # the reservation is what shipments follow
            record(alias, msg.event_id, {"order_key": msg.order_key}, [])
    return f"{result.outcome} {msg.order_number}"


async def on_revoked(batch: Batch, msg: AllocationRevoked, rec: Incoming) -> str:
    """Void the shipments of an allocation inventory took back."""
    doc = await batch.doc(f"order:{msg.order_key}")
    if doc.seen(msg.event_id):
        return "duplicate"
    result = domain.revoke(doc.state, msg)
    record(doc, msg.event_id, result.state if result.state is not None else doc.state, result.outputs)
    return f"{result.outcome} {msg.order_number}"


async def on_supply(batch: Batch, msg: SupplyNeeded, rec: Incoming) -> str:
    """Send production or purchasing their instruction, and remember which order waits on it."""
    doc = await batch.doc(f"order:{msg.order_key}")
    if doc.seen(msg.event_id):
        return "duplicate"
    if (doc.state or {}).get("status") == "cancelled":
        record(doc, msg.event_id, doc.state, [])
        return f"ignored: {msg.order_number} cancelled"
    if msg.kind == "production":
        link = await batch.doc(_supply_link(msg.request_id))
        if link.state is None:
            record(link, msg.event_id, {"order_key": msg.order_key}, [])
    else:
        link = await batch.doc(_purchases(msg.sku))
        orders = dict((link.state or {}).get("orders", {}))
        if msg.request_id not in orders.get(msg.order_key, []):
            orders[msg.order_key] = [*orders.get(msg.order_key, []), msg.request_id]
            record(link, msg.event_id, {"sku": msg.sku, "orders": orders}, [])
    record(doc, msg.event_id, domain.remember_supply(doc.state, msg), [domain.supply_instruction(msg)])
    return f"{msg.kind} requested {msg.request_id}"


async def _unlink_purchases(batch: Batch, state: dict[str, Any] | None, key: str, cause: str) -> None:
    """The order no longer waits on purchases (reserved or cancelled): drop it from the per-SKU lists."""
    for sku in sorted({e["sku"] for e in (state or {}).get("supply", {}).values() if e["kind"] == "purchase"}):
        link = await batch.doc(_purchases(sku))
        orders = (link.state or {}).get("orders", {})
        if key in orders:
            rest = {k: v for k, v in orders.items() if k != key}
            record(link, cause, {**(link.state or {}), "orders": rest}, [])


async def _slip(
    batch: Batch, doc: Doc, request_ids: list[str], expected: date, source: dict[str, Any], cause: str
) -> str:
    if doc.seen(cause):
        return "duplicate"
    key = doc.key.removeprefix("order:")
    tl = await batch.doc(timeline.key(key))
    result = domain.slip(doc.state, timeline.last_status(tl.state), request_ids, expected, source, cause, batch.now)
    if result.state is None:
        return result.outcome
    record(doc, cause, result.state, result.outputs)
    return f"{key}: {result.outcome}"


async def on_production(batch: Batch, msg: ProductionUpdated, rec: Incoming) -> str:
    """Production's expected completion for a request fulfillment sent (2.4.1): maybe a slipped promise."""
    if msg.status != "planned":
        return f"production {msg.production_request_id} {msg.status}"  # done: inventory reserves the goods
    link = await batch.doc(_supply_link(msg.production_request_id))
    if link.state is None:
        return f"ignored: production request {msg.production_request_id} not ours"
    doc = await batch.doc(f"order:{link.state['order_key']}")
    source = {"production_request_id": msg.production_request_id}
    cause = f"{msg.event_id or rec.origin}:{link.state['order_key']}"
    return await _slip(batch, doc, [msg.production_request_id], msg.expected_completion, source, cause)


async def on_purchase_order(batch: Batch, msg: PurchaseOrderUpdated, rec: Incoming) -> str:
    """A purchase order's ETA for a SKU that orders wait on after a purchase request (2.4.1)."""
    if msg.status != "open":
        return f"po {msg.po_number} {msg.status}"
    link = await batch.doc(_purchases(msg.sku))
    orders: dict[str, list[str]] = (link.state or {}).get("orders", {})
    if not orders:
        return f"ignored: no order waits on a purchase of {msg.sku}"
    keys = sorted(orders)
    await batch.prefetch([k for key in keys for k in (f"order:{key}", timeline.key(key))])
    source = {"po_number": msg.po_number}
    outcomes = []
    for key in keys:
        doc = await batch.doc(f"order:{key}")
        cause = f"{msg.event_id or rec.origin}:{key}"
        outcomes.append(await _slip(batch, doc, orders[key], msg.eta, source, cause))
    return "; ".join(outcomes)


async def on_status(batch: Batch, msg: OrderStatus, rec: Incoming) -> str:
    """Append the status to the order's timeline (the read model behind `orderflow track`); restate `cancelled`
    after a late step of an order cancelled here."""
    key = order_key(msg.channel, msg.channel_order_ref)
    order = await batch.doc(f"order:{key}")
    if order.state is not None and not order.seen(msg.event_id):
        restated = domain.restate_cancelled(order.state, msg, batch.now)
        if restated is not None:
            record(order, msg.event_id, order.state, [restated])
    doc = await batch.doc(timeline.key(key))
    new = timeline.append(doc.state, key, msg)
    if new is None:
        return "duplicate"
    first_numbered = msg.order_number and not (doc.state or {}).get("order_number")
    record(doc, msg.event_id, new, [])
    if msg.order_number and first_numbered:
        alias = await batch.doc(timeline.alias(msg.order_number))
        if alias.state is None:  # never overrides the reservation's alias, which shipment events follow
            record(alias, msg.event_id, {"order_key": key}, [])
    return f"timeline {key} +{msg.status}"


def _cause(msg: domain.ShipmentEvent) -> str:
    """The inbox id of a shipment event. Dispatch and exception may legitimately repeat (exception, then
    re-dispatch with a new tracking number), so for them the message's own content tells a repeat from a
    redelivery; the other events happen once per shipment."""
    base = f"{msg.type}:{msg.shipment_id}"
    if isinstance(msg, ShipmentDispatched):
        return f"{base}:{msg.tracking_number}"
    if isinstance(msg, ShipmentException):
        return f"{base}:{derive_id(msg.model_dump_json())}"
    return base


async def on_shipment_event(batch: Batch, msg: domain.ShipmentEvent, rec: Incoming) -> str:
    """Apply a warehouse/carrier event; an impossible one goes to the dead-letter topic with the reason."""
    alias = await batch.doc(timeline.alias(_number(msg, rec)))
    # the batch prefetched the aliases of its shipment events: load all their orders in one round trip
    await batch.prefetch(
        f"order:{d.state['order_key']}" for k, d in batch.docs.items() if k.startswith("number:") and d.state
    )
    if alias.state is None:
        batch.dead_letter(rec, f"{msg.type} refused: unknown order number {_number(msg, rec)!r}")
        return "refused: unknown order"
    doc = await batch.doc(f"order:{alias.state['order_key']}")
    cause = _cause(msg)
    if doc.seen(cause):
        return "duplicate"
    try:
        result = domain.track(doc.state, msg, cause, batch.now)
    except domain.Refused as exc:
        batch.dead_letter(rec, str(exc))
        return "refused"
    record(doc, cause, result.state, result.outputs)
    return result.outcome


async def on_cancel(batch: Batch, msg: OrderCancel, rec: Incoming) -> str:
    """Cancel at any stage before dispatch; the compensation follows from the cancellation event."""
    key = order_key(msg.channel, msg.channel_order_ref)
    doc = await batch.doc(f"order:{key}")
    if doc.seen(msg.command_id):
        return "duplicate"
    result = domain.cancel(doc.state, msg, key, batch.now)
    if result.state is not None:
        await _unlink_purchases(batch, doc.state, key, msg.command_id)
    record(doc, msg.command_id, result.state if result.state is not None else doc.state, result.outputs)
    return result.outcome


HANDLERS: dict[type[BaseModel], Handler] = {
    OrderShipping: on_shipping,
    AllocationReserved: on_reserved,
    AllocationRevoked: on_revoked,
    SupplyNeeded: on_supply,
    OrderCancel: on_cancel,
    OrderStatus: on_status,
    ProductionUpdated: on_production,
    PurchaseOrderUpdated: on_purchase_order,
    **{t: on_shipment_event for t in SHIPMENT_EVENTS},
}
