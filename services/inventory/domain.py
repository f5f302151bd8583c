"""Inventory's decisions (handbook 2.3): reserve, backorder, produce, or ask the customer."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from contracts import topics
from contracts.common import Reason
from contracts.internal import (
    Allocation,
    AllocationReserved,
    ApprovedLine,
    OrderApproved,
    OrderCancelled,
    SupplyNeeded,
)
from contracts.public import ShipmentLine, ShortageDecision
from services.inventory.stock import Stock
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import status

RULES = "inventory-allocation/1"


@dataclass
class Result:
    """An order's new inventory state, the events, and whether the stock changes are to be kept."""

    state: dict[str, Any] | None
    outputs: list[Outgoing] = field(default_factory=list)
    outcome: str = "ignored"
    keep_stock: bool = False


def rid(order_number: str, line_no: int) -> str:
    """The reservation id of one order line."""
    return f"{order_number}#{line_no}"


def _status(cause: str, order: OrderApproved, name: str, now: datetime, **kw: Any) -> Outgoing:
    return status(
        cause,
        order.channel,
        order.channel_order_ref,
        name,
        now,
        revision=order.revision,
        order_number=order.order_number,
        decided_by=kw.pop("decided_by", RULES),
        **kw,
    )


def allocate(
    cause: str,
    order: OrderApproved,
    stocks: dict[str, Stock],
    prefs: tuple[str, ...],
    now: datetime,
    lines: list[ApprovedLine] | None = None,
    wait: bool = False,
) -> Result:
    """Reserve every line, or backorder / produce the gaps, or (holding nothing) offer the customer options."""
    number = order.order_number or order.order_key
    plan: dict[str, Any] = {}
    short: list[ApprovedLine] = []
    promise = None
    needs: list[SupplyNeeded] = []
    for line in lines or order.lines:
        r, st = rid(number, line.line_no), stocks[line.sku]
        held = sum(st.reservations.get(r, {}).values())
        if held >= line.quantity:
            plan[str(line.line_no)] = {"sku": line.sku, "qty": line.quantity, "state": "reserved"}
            continue
        where = st.plan(line.quantity - held, prefs)
        if where is not None:
            st.reserve(r, where)
            plan[str(line.line_no)] = {"sku": line.sku, "qty": line.quantity, "state": "reserved"}
            continue
        avail = max(0, st.total_available())
        gap = line.quantity - held - avail
        if line.make_to_order:
            due = (now + timedelta(days=line.production_lead_days)).date()
            request = f"PR-{number}-{line.line_no}"
            st.waiting[r] = {
                "order_key": order.order_key,
                "qty": line.quantity - held,
                "since": now.isoformat(),
                "request_id": request,
                "kind": "production",
            }
            needs.append(_need(order, "production", request, line, line.quantity - held, due))
            plan[str(line.line_no)] = {"sku": line.sku, "qty": line.quantity, "state": "in_production"}
            promise = max(promise or due, due)
            continue
        eta = st.promise(r, gap, date.max if wait else order.requested_date)
        if eta is None and wait:
            request = f"PO-REQ-{number}-{line.line_no}"
            needs.append(_need(order, "purchase", request, line, gap, order.requested_date))
        if eta is not None or wait:
            if avail:
                st.reserve(r, st.plan(avail, prefs) or {})
            st.waiting[r] = {"order_key": order.order_key, "qty": gap, "since": now.isoformat(), "kind": "backorder"}
            plan[str(line.line_no)] = {"sku": line.sku, "qty": line.quantity, "state": "backordered"}
            if eta is not None:
                promise = max(promise or eta, eta)
            continue
        short.append(line)
    state = {
        "order_number": number,
        "revision": order.revision,
        "approved": order.model_dump(mode="json"),
        "lines": plan,
    }
    if short:
        options = _options(order, short, stocks)
        state.update(status="awaiting_customer_decision", options=options, lines={})
        reasons = [
            Reason(
                code="insufficient_stock",
                field=f"lines[line_no={l.line_no}]",
                message=f"{l.sku}: {l.quantity} ordered, {max(0, stocks[l.sku].total_available())} available",
            )
            for l in short
        ]
        out = _status(cause, order, "awaiting_customer_decision", now, reasons=reasons, details={"options": options})
        return Result(state, [out], "awaiting_customer_decision", keep_stock=False)
    states = {v["state"] for v in plan.values()}
    if states == {"reserved"}:
        state["status"] = "reserved"
        return Result(state, reserved_events(cause, order, stocks, now), "reserved", keep_stock=True)
    name = "in_production" if "in_production" in states else "backordered"
    state.update(status=name, promise_date=promise.isoformat() if promise else None)
    outs = [_status(cause, order, name, now, promise_date=promise)]
    outs += [Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, n) for n in needs]
    return Result(state, outs, name, keep_stock=True)


def _need(order: OrderApproved, kind: str, request: str, line: ApprovedLine, qty: int, due: Any) -> SupplyNeeded:
    return SupplyNeeded(
        event_id=derive_id("need", request),
        order_key=order.order_key,
        order_number=order.order_number,
        channel=order.channel,
        channel_order_ref=order.channel_order_ref,
        revision=order.revision,
        kind=kind,
        request_id=request,
        sku=line.sku,
        quantity=qty,
        needed_by=due,
    )


def _options(order: OrderApproved, short: list[ApprovedLine], stocks: dict[str, Stock]) -> dict[str, Any]:
    partial = {str(l.line_no): l.quantity for l in order.lines}
    for l in short:
        partial[str(l.line_no)] = max(0, stocks[l.sku].total_available())
    etas = [stocks[l.sku].best_eta(l.quantity - max(0, stocks[l.sku].total_available())) for l in short]
    waits = [e for e in etas if e is not None]
    substitutes = {
        str(l.line_no): [s for s in l.substitutes if s in stocks and stocks[s].total_available() >= l.quantity]
        for l in short
    }
    return {
        "ship_partial": partial,
        "wait": {"promise_date": max(waits).isoformat() if waits and len(waits) == len(etas) else None},
        "substitute": substitutes,
        "cancel": True,
    }


def reserved_events(
    cause: str, order: OrderApproved, stocks: dict[str, Stock], now: datetime, complete: bool = True
) -> list[Outgoing]:
    """The `reserved` status and the allocation fulfillment ships from (one shipment per warehouse)."""
    number = order.order_number or order.order_key
    by_wh: dict[str, list[ShipmentLine]] = {}
    for line in order.lines:
        for wh, q in sorted(stocks[line.sku].reservations.get(rid(number, line.line_no), {}).items()):
            by_wh.setdefault(wh, []).append(ShipmentLine(line_no=line.line_no, sku=line.sku, quantity=q))
    alloc = AllocationReserved(
        event_id=derive_id("reserved", cause),
        order_key=order.order_key,
        order_number=order.order_number,
        channel=order.channel,
        channel_order_ref=order.channel_order_ref,
        revision=order.revision,
        customer_id=order.customer_id,
        currency=order.currency,
        allocations=[Allocation(warehouse=w, lines=ls) for w, ls in sorted(by_wh.items())],
        prices={l.sku: l.unit_price for l in order.lines},
        charges=order.charges,
        packaging=order.packaging,
        notes=order.notes,
        complete=complete,
    )
    details = {"allocations": [a.model_dump(mode="json") for a in alloc.allocations], "complete": complete}
    return [
        _status(cause, order, "reserved", now, details=details),
        Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, alloc),
    ]


def release_all(state: dict[str, Any] | None, stocks: dict[str, Stock]) -> int:
    """Release every reservation and promise the order holds; returns units released."""
    if not state or "approved" not in state:
        return 0
    order = OrderApproved.model_validate(state["approved"])
    number = order.order_number or order.order_key
    return sum(stocks[l.sku].release(rid(number, l.line_no)) for l in order.lines if l.sku in stocks)


def cancelled(state: dict[str, Any] | None, event: OrderCancelled) -> dict[str, Any]:
    """The order's inventory state after a cancellation: nothing held, later approvals ignored."""
    return {
        **(state or {"revision": event.revision, "order_number": event.order_number}),
        "status": "cancelled",
        "lines": {},
    }


def cancel_event(cause: str, order: OrderApproved, reason: str, by: str, now: datetime) -> list[Outgoing]:
    """A customer's cancel choice: status `cancelled` and the cancellation every service compensates for."""
    ev = OrderCancelled(
        event_id=derive_id("cancelled", cause),
        order_key=order.order_key,
        order_number=order.order_number,
        channel=order.channel,
        channel_order_ref=order.channel_order_ref,
        revision=order.revision,
        reason=reason,
        cancelled_by=by,
    )
    return [
        _status(
            cause, order, "cancelled", now, reasons=[Reason(code="customer_cancelled", message=reason)], decided_by=by
        ),
        Outgoing.of(topics.ORDERS_CANCELLED, order.order_key, ev),
    ]


def refused(cmd: ShortageDecision, state: dict[str, Any], now: datetime, why: Reason | None = None) -> Outgoing:
    """A shortage decision that cannot be carried out (by default: the order awaits none); nothing changes."""
    why = why or Reason(
        code="no_decision_awaited",
        field="command_id",
        message=f"order is {state.get('status', 'unknown to inventory')}, not awaiting a shortage decision",
    )
    return status(
        cmd.command_id,
        cmd.channel,
        cmd.channel_order_ref,
        state.get("status", "approved"),
        now,
        revision=state.get("revision"),
        order_number=state.get("order_number"),
        reasons=[why],
        details={"refused": cmd.type},
        decided_by=cmd.issued_by,
    )


def decide_shortage(
    cmd: ShortageDecision, order: OrderApproved, stocks: dict[str, Stock], prefs: tuple[str, ...], now: datetime
) -> Result:
    """Carry out the customer's choice: ship the available part, wait, substitute, or cancel."""
    cause = cmd.command_id
    if cmd.choice == "cancel":
        state: dict[str, Any] = {
            "order_number": order.order_number,
            "revision": order.revision,
            "status": "cancelled",
            "lines": {},
        }
        return Result(state, cancel_event(cause, order, "customer chose to cancel", cmd.issued_by, now), "cancelled")
    if cmd.choice == "wait":
        return allocate(cause, order, stocks, prefs, now, wait=True)
    if cmd.choice == "substitute":
        sub = cmd.substitute_sku
        lines = [
            l.model_copy(update={"sku": sub})
            if sub and sub in l.substitutes and sub in stocks and stocks[l.sku].total_available() < l.quantity
            else l
            for l in order.lines
        ]
        return allocate(cause, order.model_copy(update={"lines": lines}), stocks, prefs, now)
    number = order.order_number or order.order_key
    part = []
    for l in order.lines:
        take = min(l.quantity, max(0, stocks[l.sku].total_available()))
        if take:
            stocks[l.sku].reserve(rid(number, l.line_no), stocks[l.sku].plan(take, prefs) or {})
            part.append(l.model_copy(update={"quantity": take}))
    if not part:
        return Result(
            None,
            [
                refused(
                    cmd,
                    {
                        "status": "awaiting_customer_decision",
                        "revision": order.revision,
                        "order_number": order.order_number,
                    },
                    now,
                    Reason(code="nothing_available", field="choice", message="nothing of the order is in stock now"),
                )
            ],
            "nothing to ship",
        )
    shipped = order.model_copy(update={"lines": part})
    state = {
        "order_number": order.order_number,
        "revision": order.revision,
        "status": "reserved",
        "approved": shipped.model_dump(mode="json"),
        "lines": {str(l.line_no): {"sku": l.sku, "qty": l.quantity, "state": "reserved"} for l in part},
    }
    return Result(state, reserved_events(cause, shipped, stocks, now, complete=False), "partial reserved", True)
