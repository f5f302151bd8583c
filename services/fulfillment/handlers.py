"""Fulfillment's subscriber logic: parse -> load -> decide -> record (the batch writes and publishes)."""

from collections.abc import Iterable

from pydantic import BaseModel

from contracts.internal import AllocationReserved, OrderShipping, SupplyNeeded
from contracts.public import (
    OrderCancel,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    ShipmentPacked,
    ShipmentPicked,
)
from services.fulfillment import domain
from services.runtime.batch import Batch, Handler
from services.runtime.ids import derive_id
from services.runtime.messages import Incoming
from services.runtime.outbox import record
from services.runtime.status import order_key

SHIPMENT_EVENTS = (ShipmentPicked, ShipmentPacked, ShipmentDispatched, ShipmentDelivered, ShipmentException)


def _number(msg: BaseModel, rec: Incoming) -> str:
    return getattr(msg, "order_number", None) or rec.key or ""


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, OrderShipping | AllocationReserved | SupplyNeeded):
        return [f"order:{msg.order_key}"]
    if isinstance(msg, OrderCancel):
        return [f"order:{order_key(msg.channel, msg.channel_order_ref)}"]
    if isinstance(msg, SHIPMENT_EVENTS):
        return [f"number:{_number(msg, rec)}"]
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
    record(doc, msg.event_id, result.state if result.state is not None else doc.state, result.outputs)
    if result.state is not None and msg.order_number:
        alias = await batch.doc(f"number:{msg.order_number}")
        if alias.state is None:
            record(alias, msg.event_id, {"order_key": msg.order_key}, [])
    return f"{result.outcome} {msg.order_number}"


async def on_supply(batch: Batch, msg: SupplyNeeded, rec: Incoming) -> str:
    """Send production or purchasing their instruction."""
    doc = await batch.doc(f"order:{msg.order_key}")
    if doc.seen(msg.event_id):
        return "duplicate"
    record(doc, msg.event_id, doc.state, [domain.supply_instruction(msg)])
    return f"{msg.kind} requested {msg.request_id}"


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
    alias = await batch.doc(f"number:{_number(msg, rec)}")
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
    record(doc, msg.command_id, result.state if result.state is not None else doc.state, result.outputs)
    return result.outcome


HANDLERS: dict[type[BaseModel], Handler] = {
    OrderShipping: on_shipping,
    AllocationReserved: on_reserved,
    SupplyNeeded: on_supply,
    OrderCancel: on_cancel,
    **{t: on_shipment_event for t in SHIPMENT_EVENTS},
}
