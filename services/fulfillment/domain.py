"""Fulfillment's decisions (handbook 2.4 and after): shipments, tracking, delivery, cancellation."""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contracts import topics
from contracts.common import Reason
from contracts.internal import AllocationReserved, AllocationRevoked, OrderCancelled, StockShipped, SupplyNeeded
from contracts.public import (
    Charge,
    InvoiceLine,
    InvoiceRequested,
    OrderCancel,
    OrderStatus,
    ProductionRequested,
    PurchaseRequested,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    ShipmentLine,
    ShipmentOpened,
    ShipmentPacked,
    ShipmentPicked,
    ShipmentVoided,
    ShipTo,
)
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import repeats_view, status

RULES = "fulfillment/1"
ShipmentEvent = ShipmentPicked | ShipmentPacked | ShipmentDispatched | ShipmentDelivered | ShipmentException
# shipment state -> event type -> next state
TRANSITIONS: dict[str, dict[str, str]] = {
    "opened": {"shipment.picked": "picked"},
    "picked": {"shipment.packed": "packed"},
    "packed": {"shipment.dispatched": "dispatched"},
    "dispatched": {"shipment.delivered": "delivered", "shipment.exception": "exception"},
    "exception": {"shipment.dispatched": "dispatched"},  # re-shipped with a new tracking number
}
SHIPPED = frozenset({"dispatched", "delivered", "exception"})
WAITING = frozenset({"backordered", "in_production"})  # statuses of an order waiting for supply
# statuses after which a supply answer no longer changes what the customer was promised
PAST_WAITING = frozenset(
    {"reserved", "partially_shipped", "shipped", "delivered", "delivery_exception", "cancelled", "rejected"}
)


class Refused(ValueError):
    """An impossible or out-of-order event: refused with the reason, never applied."""


@dataclass
class Result:
    """The order's new fulfillment state and the events."""

    state: dict[str, Any] | None
    outputs: list[Outgoing] = field(default_factory=list)
    outcome: str = "ignored"


def _status(cause: str, st: dict[str, Any], name: str, now: datetime, **kw: Any) -> Outgoing:
    return status(
        cause,
        st["channel"],
        st["channel_order_ref"],
        name,
        now,
        revision=st.get("revision"),
        order_number=st.get("order_number"),
        decided_by=kw.pop("decided_by", RULES),
        **kw,
    )


def shipping(state: dict[str, Any] | None, key: str, ship_to: ShipTo, base: dict[str, Any]) -> dict[str, Any]:
    """Remember where the order goes (the only address fulfillment keeps)."""
    return {**base, **(state or {}), "order_key": key, "ship_to": ship_to.model_dump(mode="json")}


def open_shipments(state: dict[str, Any] | None, ev: AllocationReserved) -> Result:
    """One shipment per warehouse of the reservation, each with its pick list."""
    st: dict[str, Any] = dict(state or {})
    if st.get("status") == "cancelled":
        return Result(None, [], "ignored: cancelled")
    st.update(
        **ev.identity(),
        customer_id=ev.customer_id,
        currency=ev.currency,
        prices={k: str(v) for k, v in ev.prices.items()},
        charges=[c.model_dump(mode="json") for c in ev.charges],
        complete=ev.complete,
        more_to_come=ev.more_to_come,
        status="open",
    )
    shipments = dict(st.get("shipments", {}))
    ship_to = ShipTo.model_validate(st["ship_to"]) if st.get("ship_to") else None
    outputs = []
    for alloc in ev.allocations:
        sid = f"{ev.order_number}-{alloc.warehouse}-{len(shipments) + 1}"
        shipments[sid] = {
            "warehouse": alloc.warehouse,
            "lines": [l.model_dump() for l in alloc.lines],
            "state": "opened",
        }
        opened = ShipmentOpened(
            event_id=derive_id("opened", ev.event_id, sid),
            shipment_id=sid,
            order_number=ev.order_number or "",
            channel=ev.channel,
            channel_order_ref=ev.channel_order_ref,
            warehouse=alloc.warehouse,
            lines=alloc.lines,
            packaging=ev.packaging,
            notes=ev.notes,
            ship_to=ship_to,
        )
        outputs.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, ev.order_number or ev.order_key, opened))
    st["shipments"] = shipments
    return Result(st, outputs, f"opened {len(ev.allocations)} shipment(s)")


def revoke(state: dict[str, Any] | None, ev: AllocationRevoked) -> Result:
    """Inventory took the stock back (reallocated to a priority order, or the order amended): every shipment
    not yet dispatched is voided, so no pick list is left for stock that is gone, and the order waits for its
    next allocation. A shipment already dispatched stays as it is (the dispatch consumed its stock)."""
    st: dict[str, Any] = dict(state or {})
    if st.get("status") == "cancelled" or not st.get("shipments"):
        return Result(None, [], f"ignored: {'cancelled' if st.get('status') == 'cancelled' else 'no shipments'}")
    shipments = {k: dict(v) for k, v in st["shipments"].items()}
    outputs: list[Outgoing] = []
    for sid, ship in sorted(shipments.items()):
        if ship["state"] in ("opened", "picked", "packed"):
            ship["state"] = "voided"
            voided = ShipmentVoided(
                event_id=derive_id("voided", ev.event_id, sid),
                shipment_id=sid,
                order_number=ev.order_number or "",
                reason=ev.reason,
            )
            outputs.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, ev.order_number or ev.order_key, voided))
    st["shipments"] = shipments
    if not any(s["state"] != "voided" for s in shipments.values()):
        st.pop("status", None)  # waiting again: for a new allocation, or on supply (promises may slip)
    left = sorted(sid for sid, s in shipments.items() if s["state"] in SHIPPED)
    return Result(st, outputs, f"voided {len(outputs)} shipment(s)" + (f"; kept dispatched {left}" if left else ""))


def supply_instruction(ev: SupplyNeeded) -> Outgoing:
    """Turn inventory's supply need into the instruction production or purchasing acts on (2.4.1)."""
    common = {
        "event_id": derive_id("instruction", ev.event_id),
        "order_number": ev.order_number or ev.order_key,
        "sku": ev.sku,
        "quantity": ev.quantity,
        "needed_by": ev.needed_by,
    }
    msg = (
        ProductionRequested(production_request_id=ev.request_id, **common)
        if ev.kind == "production"
        else PurchaseRequested(purchase_request_id=ev.request_id, **common)
    )
    return Outgoing.of(topics.SUPPLY_INSTRUCTIONS, ev.sku, msg)


def remember_supply(state: dict[str, Any] | None, ev: SupplyNeeded) -> dict[str, Any]:
    """Note which request the order waits on, so that production's and purchasing's answers find it."""
    st: dict[str, Any] = dict(state or {})
    st.setdefault("order_key", ev.order_key)
    st.setdefault("channel", ev.channel)
    st.setdefault("channel_order_ref", ev.channel_order_ref)
    st["order_number"] = st.get("order_number") or ev.order_number
    st["revision"] = max(st.get("revision") or 0, ev.revision)
    st["supply"] = {
        **st.get("supply", {}),
        ev.request_id: {
            "kind": ev.kind,
            "sku": ev.sku,
            "quantity": ev.quantity,
            "needed_by": ev.needed_by.isoformat(),
            "revision": ev.revision,
        },
    }
    return st


def slip(
    state: dict[str, Any] | None,
    last: str | None,
    request_ids: list[str],
    expected: date,
    source: dict[str, Any],
    cause: str,
    now: datetime,
) -> Result:
    """Production or purchasing expects the goods of `request_ids` on `expected` (2.4.1): remember it and,
    when that is after the date the order needs them, tell the channel the new promise date
    (status unchanged, reason `promise_slipped`). Once shipments are opened or the order is cancelled,
    nothing waits any more."""
    st = state or {}
    supply = {k: dict(v) for k, v in st.get("supply", {}).items()}
    hits = [r for r in request_ids if r in supply]
    if not hits:
        return Result(None, [], "ignored: not waiting on this supply")
    if st.get("status") or last in PAST_WAITING:
        return Result(None, [], f"ignored: order is {st.get('status') or last}")
    for r in hits:
        supply[r]["expected"] = expected.isoformat()
    new = {**st, "supply": supply}
    late = [r for r in hits if expected > date.fromisoformat(supply[r]["needed_by"])]
    if not late:
        return Result(new, [], f"on time: expected {expected}")
    promise = max(date.fromisoformat(e["expected"]) for e in supply.values() if e.get("expected"))
    if st.get("announced_promise") == promise.isoformat():
        return Result(new, [], f"promise {promise} already announced")
    need = supply[late[0]]
    name = last if last in WAITING else ("in_production" if need["kind"] == "production" else "backordered")
    what = "production" if need["kind"] == "production" else "the purchase"
    reason = Reason(
        code="promise_slipped",
        field=None,
        message=f"{need['sku']}: {what} now expects the goods on {expected}, after the requested {need['needed_by']}",
    )
    details = {"sku": need["sku"], "requested_date": need["needed_by"], "expected": expected.isoformat(), **source}
    new["announced_promise"] = promise.isoformat()
    out = _status(cause, new, name, now, reasons=[reason], promise_date=promise, details=details)
    return Result(new, [out], f"promise slipped to {promise}")


def track(state: dict[str, Any] | None, ev: ShipmentEvent, cause: str, now: datetime) -> Result:
    """Move one shipment along picked -> packed -> dispatched -> delivered | exception; refuse the rest."""
    if state is None or ev.shipment_id not in state.get("shipments", {}):
        raise Refused(f"{ev.type} for unknown shipment {ev.shipment_id}")
    st = {**state, "shipments": {k: dict(v) for k, v in state["shipments"].items()}}
    ship = st["shipments"][ev.shipment_id]
    nxt = TRANSITIONS.get(ship["state"], {}).get(ev.type)
    if nxt is None:
        raise Refused(f"{ev.type} refused: shipment {ev.shipment_id} is {ship['state']}")
    ship["state"] = nxt
    outputs: list[Outgoing] = []
    if isinstance(ev, ShipmentDispatched):
        ship.update(carrier=ev.carrier, tracking_number=ev.tracking_number)
        if "consumed" not in ship:
            ship["consumed"] = True
            outputs.append(_consume(st, ev.shipment_id, ship, cause))
        live = [s for s in st["shipments"].values() if s["state"] != "voided"]
        name = (
            "shipped" if st.get("complete", True) and all(s["state"] in SHIPPED for s in live) else "partially_shipped"
        )
        details = {
            "shipment_id": ev.shipment_id,
            "carrier": ev.carrier,
            "tracking_number": ev.tracking_number,
            "lines": ship["lines"],
        }
        outputs.insert(0, _status(cause, st, name, now, details=details))
        st["status"] = name
    elif isinstance(ev, ShipmentDelivered):
        ship["delivered_at"] = ev.delivered_at.isoformat()
        live = [s for s in st["shipments"].values() if s["state"] != "voided"]
        # a partial reservation is all that will ship, unless its backordered remainder is still to come
        if all(s["state"] == "delivered" for s in live) and not st.get("more_to_come"):
            st["status"] = "delivered"
            outputs += [
                _status(cause, st, "delivered", now, details={"delivered_at": ev.delivered_at.isoformat()}),
                _invoice(st, cause, ev.delivered_at),
            ]
    elif isinstance(ev, ShipmentException):
        st["status"] = "delivery_exception"
        reason = Reason(code=f"delivery_{ev.kind}", field=None, message=ev.note or ev.kind)
        outputs.append(
            _status(
                cause,
                st,
                "delivery_exception",
                now,
                reasons=[reason],
                details={"shipment_id": ev.shipment_id, "kind": ev.kind},
            )
        )
    return Result(st, outputs, f"{ev.shipment_id} {nxt}")


def _consume(st: dict[str, Any], sid: str, ship: dict[str, Any], cause: str) -> Outgoing:
    msg = StockShipped(
        event_id=derive_id("shipped", sid),
        order_key=st["order_key"],
        order_number=st.get("order_number"),
        channel=st["channel"],
        channel_order_ref=st["channel_order_ref"],
        revision=st.get("revision", 1),
        shipment_id=sid,
        warehouse=ship["warehouse"],
        lines=[ShipmentLine(**l) for l in ship["lines"]],
    )
    return Outgoing.of(topics.FULFILLMENT_DISPATCHED, st["order_key"], msg)


def _invoice(st: dict[str, Any], cause: str, delivered_at: datetime) -> Outgoing:
    qty: dict[str, int] = {}
    for s in st["shipments"].values():
        if s["state"] == "delivered":
            for l in s["lines"]:
                qty[l["sku"]] = qty.get(l["sku"], 0) + l["quantity"]
    lines = [
        InvoiceLine(
            sku=k,
            quantity=q,
            unit_price=Decimal(st["prices"][k]),
            amount=(Decimal(st["prices"][k]) * q).quantize(Decimal("0.01")),
        )
        for k, q in sorted(qty.items())
    ]
    charges = [Charge.model_validate(c) for c in st.get("charges", [])]
    total = sum((l.amount for l in lines), Decimal(0)) + sum((c.amount for c in charges), Decimal(0))
    msg = InvoiceRequested(
        event_id=derive_id("invoice", st["order_number"]),
        order_number=st["order_number"],
        customer_id=st["customer_id"],
        currency=st["currency"],
        lines=lines,
        charges=charges,
        total_amount=total,
        delivered_at=delivered_at,
    )
    return Outgoing.of(topics.FINANCE_INVOICE_REQUESTS, st["order_number"], msg)


def cancel(state: dict[str, Any] | None, cmd: OrderCancel, key: str, now: datetime) -> Result:
    """Cancel before dispatch: void open shipments, tell every service to release; refuse once shipped.
    A shipment back in `exception` (lost, damaged, refused) does not count as shipped: when every shipment
    that left is in exception, the order may be cancelled instead of re-shipped (its stock is gone: the
    dispatch consumed it, so only what is still reserved is released)."""
    st: dict[str, Any] = {
        "channel": cmd.channel,
        "channel_order_ref": cmd.channel_order_ref,
        "order_key": key,
        **(state or {}),
    }
    if st.get("status") == "cancelled":
        return Result(None, [], "already cancelled")
    shipped = [sid for sid, s in st.get("shipments", {}).items() if s["state"] in SHIPPED - {"exception"}]
    if shipped:
        why = Reason(
            code="already_shipped",
            field=None,
            message=f"cannot cancel: shipment(s) {', '.join(shipped)} already dispatched",
        )
        refused = _status(
            cmd.command_id,
            st,
            st.get("status", "shipped"),
            now,
            reasons=[why],
            details={"refused": cmd.type},
            decided_by=cmd.issued_by,
        )
        return Result(None, [refused], "refused: already shipped")
    shipments = {k: dict(v) for k, v in st.get("shipments", {}).items()}
    failed = sorted(sid for sid, s in shipments.items() if s["state"] == "exception")
    outputs = [
        _status(
            cmd.command_id,
            st,
            "cancelled",
            now,
            decided_by=cmd.issued_by,
            reasons=[Reason(code="cancelled", field=None, message=cmd.reason or "cancelled")],
            details={"voided_after_exception": failed} if failed else None,
        )
    ]
    for sid, s in shipments.items():
        if s["state"] != "voided":
            s["state"] = "voided"
            voided = ShipmentVoided(
                event_id=derive_id("voided", cmd.command_id, sid),
                shipment_id=sid,
                order_number=st.get("order_number") or "",
                reason=cmd.reason or "cancelled",
            )
            outputs.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, st.get("order_number") or key, voided))
    cancelled = OrderCancelled(
        event_id=derive_id("cancelled", cmd.command_id),
        order_key=key,
        order_number=st.get("order_number"),
        channel=cmd.channel,
        channel_order_ref=cmd.channel_order_ref,
        revision=st.get("revision") or 1,
        reason=cmd.reason,
        cancelled_by=cmd.issued_by,
    )
    outputs.append(Outgoing.of(topics.ORDERS_CANCELLED, key, cancelled))
    st.update(status="cancelled", shipments=shipments)
    return Result(st, outputs, f"cancelled after delivery exception of {', '.join(failed)}" if failed else "cancelled")


def restate_cancelled(state: dict[str, Any] | None, late: OrderStatus, now: datetime) -> Outgoing | None:
    """`cancelled` again after a step another service published once the order was cancelled here (it had
    not yet received the cancellation, which then undid that step), so the order's last status stays true.
    Refusals, ignored messages and cancellations restate nothing."""
    st = state or {}
    if st.get("status") != "cancelled" or late.status == "cancelled" or repeats_view(late.details):
        return None
    why = f"the order was cancelled; the late '{late.status}' step was undone"
    return _status(
        f"restated:{late.event_id}",
        st,
        "cancelled",
        now,
        reasons=[Reason(code="cancelled", field=None, message=why)],
        details={"restated_after": late.status},
    )
