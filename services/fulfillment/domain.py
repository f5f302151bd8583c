"""Fulfillment's decisions (handbook 2.4 and after): shipments, tracking, delivery, cancellation, slipped
promises and the order timeline. Every function here is pure: it takes the typed state (`store`) and a
message, and returns a `Decision` (the new state, or None when nothing changes, and the events); it never
changes what it is given.

A cancel for an order nothing is known of (no status, no fulfillment document) is refused with the reason
`unknown_order`. Because `orders.commands` and the order's own messages travel on different topics, a cancel
sent right after its order can overtake it: the refusal then says "pending: no such order yet", and the cancel
is kept for CANCEL_GUARD. If the order's first status was published within that time, the cancel is applied
then (its `cancelled` answer follows); otherwise it lapses and nothing of it is left for the order.
"""

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from contracts import topics
from contracts.common import Reason
from contracts.internal import (
    AllocationReserved,
    AllocationRevoked,
    OrderCancelled,
    OrderShipping,
    StockShipped,
    SupplyNeeded,
)
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
)
from services.fulfillment import timeline as tl
from services.fulfillment.store import (
    ChargeLine,
    Line,
    Link,
    Order,
    PendingCancel,
    Purchases,
    Shipment,
    ShipmentState,
    SupplyNeed,
    Timeline,
)
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import enters_state, order_status, repeats_view
from services.runtime.steps import Decision

RULES = "fulfillment/1"
CANCEL_GUARD = timedelta(minutes=5)  # how long a cancel that came before its order waits for it
UNKNOWN_ORDER = "unknown_order"
ShipmentEvent = ShipmentPicked | ShipmentPacked | ShipmentDispatched | ShipmentDelivered | ShipmentException
# shipment state -> event type -> next state
TRANSITIONS: dict[str, dict[str, ShipmentState]] = {
    "opened": {"shipment.picked": "picked"},
    "picked": {"shipment.packed": "packed"},
    "packed": {"shipment.dispatched": "dispatched"},
    "dispatched": {"shipment.delivered": "delivered", "shipment.exception": "exception"},
    "exception": {"shipment.dispatched": "dispatched"},  # re-shipped with a new tracking number
}
SHIPPED = frozenset({"dispatched", "delivered", "exception"})
UNSHIPPED = frozenset({"opened", "picked", "packed"})
WAITING = frozenset({"backordered", "in_production"})  # statuses of an order waiting for supply
# statuses after which a supply answer no longer changes what the customer was promised
PAST_WAITING = frozenset(
    {"reserved", "partially_shipped", "shipped", "delivered", "delivery_exception", "cancelled", "rejected"}
)
NOTHING_TO_CANCEL = frozenset({"invalid", "rejected", "cancelled"})  # first statuses that end a pending cancel


class Refused(ValueError):
    """An impossible or out-of-order event: refused with the reason, never applied."""


def _said(code: str, message: str, field: str | None = None) -> list[Reason]:
    return [Reason(code=code, field=field, message=message)]


# ---- the ship-to and the reservation ----
def shipping(order: Order | None, msg: OrderShipping) -> Decision[Order]:
    """Remember where the order goes (the only address fulfillment keeps)."""
    base = order or Order(msg.order_key, msg.channel, msg.channel_order_ref, msg.order_number, msg.revision)
    new = replace(
        base,
        order_key=msg.order_key,
        order_number=base.order_number or msg.order_number,
        revision=base.revision if base.revision is not None else msg.revision,
        ship_to=msg.ship_to,
    )
    return Decision(new, (), f"ship-to stored {msg.order_number}")


def open_shipments(order: Order | None, ev: AllocationReserved) -> Decision[Order]:
    """One shipment per warehouse of the reservation, each with its pick list."""
    if order is not None and order.status == "cancelled":
        return Decision(None, (), "ignored: cancelled")
    base = order or Order(ev.order_key, ev.channel, ev.channel_order_ref)
    shipments = dict(base.shipments)
    events = []
    for alloc in ev.allocations:
        sid = f"{ev.order_number}-{alloc.warehouse}-{len(shipments) + 1}"
        lines = tuple(Line(l.line_no, l.sku, l.quantity) for l in alloc.lines)
        shipments[sid] = Shipment(alloc.warehouse, lines, "opened")
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
            ship_to=base.ship_to,
        )
        events.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, ev.order_number or ev.order_key, opened))
    new = replace(
        base,
        shipments=shipments,
        **ev.identity(),
        customer_id=ev.customer_id,
        currency=ev.currency,
        prices=dict(ev.prices),
        charges=tuple(ChargeLine(c.code, c.description, c.amount) for c in ev.charges),
        complete=ev.complete,
        more_to_come=ev.more_to_come,
        status="open",
    )
    return Decision(new, tuple(events), f"opened {len(ev.allocations)} shipment(s)")


def revoke(order: Order | None, ev: AllocationRevoked) -> Decision[Order]:
    """Inventory took the stock back (reallocated to a priority order, or the order amended): every shipment
    not yet dispatched is voided, so no pick list is left for stock that is gone, and the order waits for its
    next allocation. A shipment already dispatched stays as it is (the dispatch consumed its stock)."""
    if order is None or order.status == "cancelled" or not order.shipments:
        why = "cancelled" if order is not None and order.status == "cancelled" else "no shipments"
        return Decision(None, (), f"ignored: {why}")
    shipments = dict(order.shipments)
    events = []
    for sid, ship in sorted(shipments.items()):
        if ship.state in UNSHIPPED:
            shipments[sid] = replace(ship, state="voided")
            voided = ShipmentVoided(
                event_id=derive_id("voided", ev.event_id, sid),
                shipment_id=sid,
                order_number=ev.order_number or "",
                reason=ev.reason,
            )
            events.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, ev.order_number or ev.order_key, voided))
    # with nothing left, it waits again: for a new allocation, or on supply (promises may slip)
    waiting = all(s.state == "voided" for s in shipments.values())
    new = replace(order, shipments=shipments, status=None if waiting else order.status)
    left = sorted(sid for sid, s in shipments.items() if s.state in SHIPPED)
    kept = f"; kept dispatched {left}" if left else ""
    return Decision(new, tuple(events), f"voided {len(events)} shipment(s){kept}")


# ---- supply: instructions and slipped promises (2.4.1) ----
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
        ProductionRequested.model_validate({"production_request_id": ev.request_id, **common})
        if ev.kind == "production"
        else PurchaseRequested.model_validate({"purchase_request_id": ev.request_id, **common})
    )
    return Outgoing.of(topics.SUPPLY_INSTRUCTIONS, ev.sku, msg)


def remember_supply(order: Order | None, ev: SupplyNeeded) -> Order:
    """Note which request the order waits on, so that production's and purchasing's answers find it."""
    base = order or Order(ev.order_key, ev.channel, ev.channel_order_ref)
    need = SupplyNeed(ev.kind, ev.sku, ev.quantity, ev.needed_by, ev.revision)
    return replace(
        base,
        order_number=base.order_number or ev.order_number,
        revision=max(base.revision or 0, ev.revision),
        supply={**base.supply, ev.request_id: need},
    )


def need_supply(order: Order | None, ev: SupplyNeeded) -> Decision[Order]:
    """Send production or purchasing their instruction and remember it; nothing for a cancelled order."""
    if order is not None and order.status == "cancelled":
        return Decision(None, (), f"ignored: {ev.order_number} cancelled")
    return Decision(remember_supply(order, ev), (supply_instruction(ev),), f"{ev.kind} requested {ev.request_id}")


def link_request(link: Link | None, order_key: str) -> Decision[Link]:
    """The link from a production request to the order it was made for (written once)."""
    return Decision(Link(order_key) if link is None else None)


def wait_on_purchase(purchases: Purchases | None, ev: SupplyNeeded) -> Decision[Purchases]:
    """The purchase list of the SKU with the order waiting on request `ev.request_id`."""
    orders = dict(purchases.orders) if purchases else {}
    if ev.request_id in orders.get(ev.order_key, ()):
        return Decision(None)
    orders[ev.order_key] = (*orders.get(ev.order_key, ()), ev.request_id)
    return Decision(Purchases(ev.sku, orders))


def stop_waiting(purchases: Purchases | None, order_key: str) -> Decision[Purchases]:
    """The purchase list without the order (reserved or cancelled: it no longer waits)."""
    if purchases is None or order_key not in purchases.orders:
        return Decision(None)
    return Decision(replace(purchases, orders={k: v for k, v in purchases.orders.items() if k != order_key}))


def purchased_skus(order: Order | None) -> list[str]:
    """The SKUs the order waits on a purchase of."""
    return sorted({n.sku for n in order.supply.values() if n.kind == "purchase"}) if order else []


def slip(
    order: Order | None,
    last: str | None,
    request_ids: list[str],
    expected: date,
    source: dict[str, str],
    cause: str,
    now: datetime,
) -> Decision[Order]:
    """Production or purchasing expects the goods of `request_ids` on `expected` (2.4.1): remember it and,
    when that is after the date the order needs them, tell the channel the new promise date
    (status unchanged, reason `promise_slipped`). Once shipments are opened or the order is cancelled,
    nothing waits any more."""
    hits = [r for r in request_ids if order is not None and r in order.supply]
    if order is None or not hits:
        return Decision(None, (), "ignored: not waiting on this supply")
    if order.status or last in PAST_WAITING:
        return Decision(None, (), f"ignored: order is {order.status or last}")
    supply = {**order.supply, **{r: replace(order.supply[r], expected=expected) for r in hits}}
    new = replace(order, supply=supply)
    late = [r for r in hits if expected > supply[r].needed_by]
    if not late:
        return Decision(new, (), f"on time: expected {expected}")
    promise = max(n.expected for n in supply.values() if n.expected is not None)
    if order.announced_promise == promise:
        return Decision(new, (), f"promise {promise} already announced")
    need = supply[late[0]]
    name = last if last in WAITING else ("in_production" if need.kind == "production" else "backordered")
    what = "production" if need.kind == "production" else "the purchase"
    message = f"{need.sku}: {what} now expects the goods on {expected}, after the requested {need.needed_by}"
    details = {"sku": need.sku, "requested_date": need.needed_by.isoformat(), "expected": expected.isoformat()}
    new = replace(new, announced_promise=promise)
    out = order_status(
        cause,
        new,
        str(name),
        now,
        decided_by=RULES,
        reasons=_said("promise_slipped", message),
        promise_date=promise,
        details={**details, **source},
    )
    return Decision(new, (out,), f"promise slipped to {promise}")


# ---- the warehouse's and the carrier's events ----
def name_number(alias: Link | None, order_key: str, *, claim: bool) -> Decision[Link]:
    """The order-number alias: the order's first numbered status sets it if there is none; its reservation
    claims it (shipment events follow the alias; a stale status, e.g. replayed history, may have set it)."""
    if alias is None or (claim and alias.order_key != order_key):
        return Decision(Link(order_key))
    return Decision(None)


def shipment_cause(msg: ShipmentEvent) -> str:
    """The inbox id of a shipment event. Dispatch and exception may legitimately repeat (exception, then
    re-dispatch with a new tracking number), so for them the message's own content tells a repeat from a
    redelivery; the other events happen once per shipment."""
    base = f"{msg.type}:{msg.shipment_id}"
    if isinstance(msg, ShipmentDispatched):
        return f"{base}:{msg.tracking_number}"
    if isinstance(msg, ShipmentException):
        return f"{base}:{derive_id(msg.model_dump_json())}"
    return base


def track(order: Order | None, ev: ShipmentEvent, cause: str, now: datetime) -> Decision[Order]:
    """Move one shipment along picked -> packed -> dispatched -> delivered | exception; refuse the rest."""
    if order is None or ev.shipment_id not in order.shipments:
        raise Refused(f"{ev.type} for unknown shipment {ev.shipment_id}")
    ship = order.shipments[ev.shipment_id]
    nxt = TRANSITIONS.get(ship.state, {}).get(ev.type)
    if nxt is None:
        raise Refused(f"{ev.type} refused: shipment {ev.shipment_id} is {ship.state}")
    if isinstance(ev, ShipmentDispatched):
        moved = replace(ship, state=nxt, carrier=ev.carrier, tracking_number=ev.tracking_number, consumed=True)
    elif isinstance(ev, ShipmentDelivered):
        moved = replace(ship, state=nxt, delivered_at=ev.delivered_at)
    else:
        moved = replace(ship, state=nxt)
    shipments = {**order.shipments, ev.shipment_id: moved}
    live = [s.state for s in shipments.values() if s.state != "voided"]
    # a partial reservation is all that ships, unless its backordered remainder is still to come
    done = isinstance(ev, ShipmentDelivered) and all(s == "delivered" for s in live) and not order.more_to_come
    name = "delivered" if done else order.status
    if isinstance(ev, ShipmentDispatched):
        name = "shipped" if order.complete and all(s in SHIPPED for s in live) else "partially_shipped"
    elif isinstance(ev, ShipmentException):
        name = "delivery_exception"
    new = replace(order, shipments=shipments, status=name)
    events: list[Outgoing] = []
    if isinstance(ev, ShipmentDispatched):
        details = {
            "shipment_id": ev.shipment_id,
            "carrier": ev.carrier,
            "tracking_number": ev.tracking_number,
            "lines": [l.to_doc() for l in moved.lines],
        }
        events.append(order_status(cause, new, str(name), now, decided_by=RULES, details=details))
        if not ship.consumed:
            events.append(_consume(new, ev.shipment_id, moved))
    elif isinstance(ev, ShipmentDelivered) and done:
        details = {"delivered_at": ev.delivered_at.isoformat()}
        events += [
            order_status(cause, new, "delivered", now, decided_by=RULES, details=details),
            _invoice(new, ev.delivered_at),
        ]
    elif isinstance(ev, ShipmentException):
        reasons = _said(f"delivery_{ev.kind}", ev.note or ev.kind)
        details = {"shipment_id": ev.shipment_id, "kind": ev.kind}
        events.append(order_status(cause, new, str(name), now, decided_by=RULES, reasons=reasons, details=details))
    return Decision(new, tuple(events), f"{nxt} {ev.shipment_id}")  # the state first: the metric label


def _consume(order: Order, sid: str, ship: Shipment) -> Outgoing:
    msg = StockShipped(
        event_id=derive_id("shipped", sid),
        order_key=order.order_key,
        order_number=order.order_number,
        channel=order.channel,
        channel_order_ref=order.channel_order_ref,
        revision=order.revision or 1,
        shipment_id=sid,
        warehouse=ship.warehouse,
        lines=[ShipmentLine(line_no=l.line_no, sku=l.sku, quantity=l.quantity) for l in ship.lines],
    )
    return Outgoing.of(topics.FULFILLMENT_DISPATCHED, order.order_key, msg)


def _invoice(order: Order, delivered_at: datetime) -> Outgoing:
    qty: dict[str, int] = {}
    for s in order.shipments.values():
        if s.state == "delivered":
            for l in s.lines:
                qty[l.sku] = qty.get(l.sku, 0) + l.quantity
    lines = [
        InvoiceLine(
            sku=k,
            quantity=q,
            unit_price=order.prices[k],
            amount=(order.prices[k] * q).quantize(Decimal("0.01")),
        )
        for k, q in sorted(qty.items())
    ]
    charges = [Charge(code=c.code, description=c.description, amount=c.amount) for c in order.charges]
    total = sum((l.amount for l in lines), Decimal(0)) + sum((c.amount for c in charges), Decimal(0))
    number = order.order_number or ""
    msg = InvoiceRequested(
        event_id=derive_id("invoice", number),
        order_number=number,
        customer_id=order.customer_id or "",
        currency=order.currency or "",
        lines=lines,
        charges=charges,
        total_amount=total,
        delivered_at=delivered_at,
    )
    return Outgoing.of(topics.FINANCE_INVOICE_REQUESTS, number, msg)


# ---- cancellation ----
def cancel(order: Order | None, timeline: Timeline | None, cmd: OrderCancel, now: datetime) -> Decision[Order]:
    """Cancel before dispatch: void open shipments, tell every service to release; refuse once shipped.
    A shipment back in `exception` (lost, damaged, refused) does not count as shipped: when every shipment
    that left is in exception, the order may be cancelled instead of re-shipped (its stock is gone: the
    dispatch consumed it, so only what is still reserved is released). An order nothing is known of gets
    the pending refusal (module docstring)."""
    if (order is None or not order.known) and timeline is None:
        return _pending(order, cmd, now)
    base = order or Order(f"{cmd.channel}:{cmd.channel_order_ref}", cmd.channel, cmd.channel_order_ref)
    if timeline is not None:  # an order known only by its statuses: name it as they do
        last = timeline.entries[-1] if timeline.entries else None
        revision = base.revision if base.revision is not None else (last.revision if last else None)
        base = replace(base, order_number=base.order_number or timeline.order_number, revision=revision)
    return _cancel(base, cmd, now)


def _cancel(base: Order, cmd: OrderCancel, now: datetime) -> Decision[Order]:
    key = base.order_key
    if base.status == "cancelled":
        return Decision(None, (), "already cancelled")
    shipped = [sid for sid, s in base.shipments.items() if s.state in SHIPPED - {"exception"}]
    if shipped:
        why = f"cannot cancel: shipment(s) {', '.join(shipped)} already dispatched"
        refused = order_status(
            cmd.command_id,
            base,
            base.status or "shipped",
            now,
            decided_by=cmd.issued_by,
            reasons=_said("already_shipped", why),
            details={"refused": cmd.type},
        )
        return Decision(None, (refused,), "refused: already shipped")
    failed = sorted(sid for sid, s in base.shipments.items() if s.state == "exception")
    events = [
        order_status(
            cmd.command_id,
            base,
            "cancelled",
            now,
            decided_by=cmd.issued_by,
            reasons=_said("cancelled", cmd.reason or "cancelled"),
            details={"voided_after_exception": failed} if failed else None,
        )
    ]
    shipments = dict(base.shipments)
    for sid, s in base.shipments.items():
        if s.state != "voided":
            shipments[sid] = replace(s, state="voided")
            voided = ShipmentVoided(
                event_id=derive_id("voided", cmd.command_id, sid),
                shipment_id=sid,
                order_number=base.order_number or "",
                reason=cmd.reason or "cancelled",
            )
            events.append(Outgoing.of(topics.FULFILLMENT_SHIPMENTS, base.order_number or key, voided))
    cancelled = OrderCancelled(
        event_id=derive_id("cancelled", cmd.command_id),
        order_key=key,
        order_number=base.order_number,
        channel=cmd.channel,
        channel_order_ref=cmd.channel_order_ref,
        revision=base.revision or 1,
        reason=cmd.reason,
        cancelled_by=cmd.issued_by,
    )
    events.append(Outgoing.of(topics.ORDERS_CANCELLED, key, cancelled))
    new = replace(base, shipments=shipments, status="cancelled", pending_cancel=None)
    return Decision(
        new, tuple(events), f"cancelled after delivery exception of {', '.join(failed)}" if failed else "cancelled"
    )


def _pending(order: Order | None, cmd: OrderCancel, now: datetime) -> Decision[Order]:
    """Refuse a cancel for an order nothing is known of, keeping it for CANCEL_GUARD in case it overtook
    its order (a newer cancel replaces an older one)."""
    key = f"{cmd.channel}:{cmd.channel_order_ref}"
    until = now + CANCEL_GUARD
    earlier = order.pending_cancel if order is not None else None
    entries = earlier.entries if earlier is not None and now <= earlier.until else ()
    new = replace(
        order or Order(key, cmd.channel, cmd.channel_order_ref), pending_cancel=PendingCancel(cmd, until, entries)
    )
    message = (
        f"pending: no such order yet: no order {key} is known; it is cancelled if it arrives by "
        f"{until:%Y-%m-%d %H:%M:%S} UTC, else this cancel lapses"
    )
    answer = order_status(
        cmd.command_id,
        new,
        "invalid",
        now,
        decided_by=cmd.issued_by,
        reasons=_said(UNKNOWN_ORDER, message, "channel_order_ref"),
        details={"refused": cmd.type, "pending_until": until.isoformat()},
    )
    return Decision(new, (answer,), f"refused: unknown order, pending until {until.isoformat()}")


def restate_cancelled(order: Order | None, late: OrderStatus, now: datetime) -> Outgoing | None:
    """`cancelled` again after a step another service published once the order was cancelled here (it had
    not yet received the cancellation, which then undid that step), so the order's last status stays true.
    Refusals, ignored messages and cancellations restate nothing."""
    if order is None or order.status != "cancelled" or late.status == "cancelled" or repeats_view(late.details):
        return None
    why = f"the order was cancelled; the late '{late.status}' step was undone"
    return order_status(
        f"restated:{late.event_id}",
        order,
        "cancelled",
        now,
        decided_by=RULES,
        reasons=_said("cancelled", why),
        details={"restated_after": late.status},
    )


# ---- the timeline (read model) ----
def _about_no_order(msg: OrderStatus) -> bool:
    return repeats_view(msg.details) and any(r.code == UNKNOWN_ORDER for r in msg.reasons)


def status_seen(order: Order | None, msg: OrderStatus, at: int, now: datetime) -> tuple[Decision[Order], bool]:
    """`on_status` for the order document, which holds the timeline: one decision (one write) for both, the
    order created, holding only its timeline, by its first status, and the statuses the decision publishes
    recorded with it; and whether the order itself changed or spoke (then its inbox keeps the status id; the
    timeline alone dedupes by event id). `at`: the status's offset on `orders.status`."""
    key = f"{msg.channel}:{msg.channel_order_ref}"
    for_order, for_timeline = on_status(order, order.timeline if order else None, msg, now, at)
    acted = for_order.new_state is not None or bool(for_order.events)
    outcome = "; ".join(o for o in (for_order.outcome, for_timeline.outcome) if o)
    if for_timeline.new_state is None:
        return with_own_statuses(order, Decision(for_order.new_state, for_order.events, outcome)), acted
    base = for_order.new_state or order or Order(key, msg.channel, msg.channel_order_ref)
    decision = Decision(replace(base, timeline=for_timeline.new_state), for_order.events, outcome)
    return with_own_statuses(order, decision), acted


def with_own_statuses(order: Order | None, decision: Decision[Order]) -> Decision[Order]:
    """The decision with the statuses it publishes about the order already on the order's timeline (without
    an offset until their copy comes back, see `timeline.settle`), so that their copies coming back on
    `orders.status` write nothing. Only a timeline that exists is extended (the statuses start one)."""
    base = decision.new_state or order
    if base is None or base.timeline is None:
        return decision
    timeline = base.timeline
    for out in decision.events:
        if out.topic == topics.ORDERS_STATUS and out.key == base.order_key:
            timeline = tl.append(timeline, OrderStatus.model_validate_json(out.value)) or timeline
    if timeline is base.timeline:
        return decision
    return replace(decision, new_state=replace(base, timeline=timeline))


def on_status(
    order: Order | None, timeline: Timeline | None, msg: OrderStatus, now: datetime, at: int | None = None
) -> tuple[Decision[Order], Decision[Timeline]]:
    """Append the status to the order's timeline; a refusal about an order nothing is known of starts none
    (it is kept with a pending cancel, and joins the timeline only if the order arrives in time, also when
    other services' news of the order, such as its ship-to, came first). The order's
    first status applies a pending cancel published before it lapsed; a late step of an order cancelled
    here is followed by `cancelled` again. Decisions for the order and for the timeline, in that order."""
    key, unchanged = f"{msg.channel}:{msg.channel_order_ref}", Decision[Order](None)
    guard = order.pending_cancel if order is not None else None
    live = guard if guard is not None and msg.occurred_at <= guard.until else None
    if timeline is None and _about_no_order(msg):
        if order is None or live is None or any(e.event_id == msg.event_id for e in live.entries):
            return unchanged, Decision(None, (), "not recorded: no such order")
        kept = replace(live, entries=(*live.entries, tl.entry(msg, at)))
        return Decision(replace(order, pending_cancel=kept)), Decision(None, (), "kept with the pending cancel")
    appended = tl.append(timeline or tl.start(key, msg, live.entries if live else ()), msg, at)
    if appended is None:
        settled = tl.settle(timeline, msg.event_id, at) if timeline is not None and at is not None else None
        return unchanged, Decision(settled, (), "duplicate" if settled is None else f"timeline {key} reordered")
    added = Decision(appended, (), f"timeline {key} +{msg.status}")
    if order is None or guard is None or not enters_state(msg.details):
        restated = restate_cancelled(order, msg, now)
        return (Decision(None, (restated,)) if restated else unchanged), added
    if live is None or msg.status in NOTHING_TO_CANCEL:
        return Decision(replace(order, pending_cancel=None), (), "pending cancel lapsed"), added
    revision = msg.revision if msg.revision is not None else order.revision
    named = replace(order, order_number=order.order_number or msg.order_number, revision=revision)
    return _cancel(named, live.command, now), added
