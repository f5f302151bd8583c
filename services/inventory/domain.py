"""Inventory's decisions (handbook 2.3): reserve, backorder, produce, ask the customer, or (for a priority
order) ask a supervisor to reallocate stock held for normal orders."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from contracts import topics
from contracts.common import Reason
from contracts.internal import (
    Allocation,
    AllocationReserved,
    AllocationRevoked,
    ApprovedLine,
    OrderApproved,
    OrderCancelled,
    SupplyNeeded,
)
from contracts.public import PriorityApproval, ShipmentLine, ShortageDecision
from services.inventory.stock import Stock
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import status

RULES = "inventory-allocation/1"
HOLDING = ("reserved", "backordered", "in_production")  # order statuses whose reservations a priority may take


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
    *,
    priority: bool = True,
    reasons: list[Reason] | None = None,
    decided_by: str = RULES,
) -> Result:
    """Reserve every line, or backorder / produce the gaps, or (holding nothing) offer the customer options.

    A priority order (urgent or VIP; unless `priority` is off) short of stock that normal orders hold
    movably instead holds what is free and awaits a supervisor's approval to take the rest.
    `reasons` go first on every status this emits (e.g. why the order is being re-planned).
    An order left awaiting the customer's decision holds nothing (what was tried is rolled back) and is listed
    under `deciding` in the stock of each of its lines, for `refill`; any other outcome drops it from there.
    The stock changes of the result are always to be kept."""
    saved = {s: st.copy() for s, st in stocks.items()}
    since = min((w["since"] for st in stocks.values() for w in _decisions(order, st).values()), default=None)
    result = _plan(cause, order, stocks, prefs, now, lines, wait, priority, reasons or [], decided_by)
    undecided = result.outcome == "awaiting_customer_decision"
    if undecided:
        for s, st in stocks.items():
            st.restore(saved[s])
    forget_decision(order, stocks)
    if undecided:  # listed again under its current lines, keeping its place in the queue
        for line in order.lines:
            r = rid(order.order_number or order.order_key, line.line_no)
            stocks[line.sku].deciding[r] = {"order_key": order.order_key, "since": since or now.isoformat()}
    return result


def _decisions(order: OrderApproved, st: Stock) -> dict[str, dict[str, Any]]:
    """The order's entries on one stock's `deciding` list."""
    number = order.order_number or order.order_key
    return {r: w for r, w in st.deciding.items() if r.rsplit("#", 1)[0] == number}


def forget_decision(order: OrderApproved, stocks: dict[str, Stock]) -> None:
    """The order no longer awaits a decision: take its lines off every loaded stock's `deciding` list."""
    for st in stocks.values():
        for r in _decisions(order, st):
            del st.deciding[r]


def _plan(
    cause: str,
    order: OrderApproved,
    stocks: dict[str, Stock],
    prefs: tuple[str, ...],
    now: datetime,
    lines: list[ApprovedLine] | None,
    wait: bool,
    priority: bool,
    extra: list[Reason],
    decided_by: str,
) -> Result:
    number = order.order_number or order.order_key
    owner = owner_of(order, now)
    if priority and is_priority(order):
        takes = reallocation(order, stocks, lines or order.lines)
        if takes:
            return _await_priority(cause, order, stocks, prefs, now, lines or order.lines, takes, extra)
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
            st.reserve(r, where, owner)
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
            st.own(r, owner)
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
                st.reserve(r, st.plan(avail, prefs) or {}, owner)
            st.waiting[r] = {"order_key": order.order_key, "qty": gap, "since": now.isoformat(), "kind": "backorder"}
            st.own(r, owner)
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
        why = extra + [_insufficient(l, stocks) for l in short]
        out = _status(
            cause,
            order,
            "awaiting_customer_decision",
            now,
            reasons=why,
            details={"options": options},
            decided_by=decided_by,
        )
        return Result(state, [out], "awaiting_customer_decision", keep_stock=True)
    states = {v["state"] for v in plan.values()}
    if states == {"reserved"}:
        state["status"] = "reserved"
        outs = reserved_events(cause, order, stocks, now, reasons=extra, decided_by=decided_by)
        return Result(state, outs, "reserved", keep_stock=True)
    name = "in_production" if "in_production" in states else "backordered"
    state.update(status=name, promise_date=promise.isoformat() if promise else None)
    outs = [_status(cause, order, name, now, promise_date=promise, reasons=extra, decided_by=decided_by)]
    outs += [Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, n) for n in needs]
    return Result(state, outs, name, keep_stock=True)


def _insufficient(line: ApprovedLine, stocks: dict[str, Stock]) -> Reason:
    return Reason(
        code="insufficient_stock",
        field=f"lines[line_no={line.line_no}]",
        message=f"{line.sku}: {line.quantity} ordered, {max(0, stocks[line.sku].total_available())} available",
    )


def _need(order: OrderApproved, kind: str, request: str, line: ApprovedLine, qty: int, due: Any) -> SupplyNeeded:
    return SupplyNeeded(
        event_id=derive_id("need", request),
        **order.identity(),
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
        "remainder": ["cancel", "backorder"],  # with ship_partial: the rest cancelled, or backordered and sent later
        "wait": {"promise_date": max(waits).isoformat() if waits and len(waits) == len(etas) else None},
        "substitute": substitutes,
        "cancel": True,
    }


def allocation(
    cause: str,
    order: OrderApproved,
    stocks: dict[str, Stock],
    *,
    complete: bool = True,
    more_to_come: bool = False,
    less: dict[str, dict[str, int]] | None = None,
) -> AllocationReserved:
    """What fulfillment ships from: the order's reservations by warehouse, less what an earlier allocation of it
    already handed over and is not yet shipped (`less`: line -> warehouse -> units)."""
    number = order.order_number or order.order_key
    by_wh: dict[str, list[ShipmentLine]] = {}
    for line in order.lines:
        held = stocks[line.sku].reservations.get(rid(number, line.line_no), {})
        sent = (less or {}).get(str(line.line_no), {})
        for wh, q in sorted(held.items()):
            if q - sent.get(wh, 0) > 0:
                by_wh.setdefault(wh, []).append(
                    ShipmentLine(line_no=line.line_no, sku=line.sku, quantity=q - sent.get(wh, 0))
                )
    return AllocationReserved(
        event_id=derive_id("reserved", cause),
        **order.identity(),
        customer_id=order.customer_id,
        currency=order.currency,
        allocations=[Allocation(warehouse=w, lines=ls) for w, ls in sorted(by_wh.items())],
        prices={l.sku: l.unit_price for l in order.lines},
        charges=order.charges,
        packaging=order.packaging,
        notes=order.notes,
        complete=complete,
        more_to_come=more_to_come,
    )


def _allocation_details(alloc: AllocationReserved) -> dict[str, Any]:
    return {"allocations": [a.model_dump(mode="json") for a in alloc.allocations], "complete": alloc.complete}


def reserved_events(
    cause: str,
    order: OrderApproved,
    stocks: dict[str, Stock],
    now: datetime,
    complete: bool = True,
    *,
    reasons: list[Reason] | None = None,
    decided_by: str = RULES,
) -> list[Outgoing]:
    """The `reserved` status and the allocation fulfillment ships from (one shipment per warehouse)."""
    alloc = allocation(cause, order, stocks, complete=complete)
    return [
        _status(
            cause, order, "reserved", now, details=_allocation_details(alloc), reasons=reasons, decided_by=decided_by
        ),
        Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, alloc),
    ]


def release_all(state: dict[str, Any] | None, stocks: dict[str, Stock]) -> int:
    """Release every reservation and promise the order holds; returns units released."""
    if not state or "approved" not in state:
        return 0
    order = OrderApproved.model_validate(state["approved"])
    number = order.order_number or order.order_key
    return sum(stocks[l.sku].release(rid(number, l.line_no)) for l in order.lines if l.sku in stocks)


def revoked(cause: str, order: OrderApproved, reason: str) -> Outgoing:
    """Withdraw the allocation fulfillment ships from (its stock went elsewhere): the order's shipments not yet
    dispatched are voided. Sent on the allocations topic under the order's key, ahead of any new allocation."""
    ev = AllocationRevoked(event_id=derive_id("revoked", cause), **order.identity(), reason=reason)
    return Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, ev)


def cancelled(state: dict[str, Any] | None, event: OrderCancelled) -> dict[str, Any]:
    """The order's inventory state after a cancellation: nothing held, later approvals ignored."""
    kept = dict(state or {"revision": event.revision, "order_number": event.order_number})
    kept.pop("sent", None)
    return {**kept, "status": "cancelled", "lines": {}}


def cancel_event(cause: str, order: OrderApproved, reason: str, by: str, now: datetime) -> list[Outgoing]:
    """A customer's cancel choice: status `cancelled` and the cancellation every service compensates for."""
    ev = OrderCancelled(
        event_id=derive_id("cancelled", cause),
        **order.identity(),
        reason=reason,
        cancelled_by=by,
    )
    return [
        _status(
            cause, order, "cancelled", now, reasons=[Reason(code="customer_cancelled", message=reason)], decided_by=by
        ),
        Outgoing.of(topics.ORDERS_CANCELLED, order.order_key, ev),
    ]


def refused(
    cmd: ShortageDecision | PriorityApproval, state: dict[str, Any], now: datetime, why: Reason | None = None
) -> Outgoing:
    """A shortage decision or priority approval that cannot be carried out (by default: the order awaits
    none); nothing changes."""
    awaited = "a shortage decision" if isinstance(cmd, ShortageDecision) else "a priority approval"
    why = why or Reason(
        code="no_decision_awaited" if isinstance(cmd, ShortageDecision) else "no_priority_approval_awaited",
        field="command_id",
        message=f"order is {state.get('status', 'unknown to inventory')}, not awaiting {awaited}",
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
        forget_decision(order, stocks)
        outputs = cancel_event(cause, order, "customer chose to cancel", cmd.issued_by, now)
        return Result(state, outputs, "cancelled", keep_stock=True)
    if cmd.choice == "wait":
        return allocate(cause, order, stocks, prefs, now, wait=True, priority=False)
    if cmd.choice == "substitute":
        sub = cmd.substitute_sku
        lines = [
            l.model_copy(update={"sku": sub})
            if sub and sub in l.substitutes and sub in stocks and stocks[l.sku].total_available() < l.quantity
            else l
            for l in order.lines
        ]
        return allocate(cause, order.model_copy(update={"lines": lines}), stocks, prefs, now, priority=False)
    number = order.order_number or order.order_key
    if not any(stocks[l.sku].total_available() > 0 for l in order.lines):
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
    if cmd.remainder == "backorder":
        return _part_now_rest_later(cause, order, stocks, prefs, now)
    part = []
    for l in order.lines:
        take = min(l.quantity, max(0, stocks[l.sku].total_available()))
        if take:
            stocks[l.sku].reserve(rid(number, l.line_no), stocks[l.sku].plan(take, prefs) or {}, owner_of(order, now))
            part.append(l.model_copy(update={"quantity": take}))
    forget_decision(order, stocks)
    shipped = order.model_copy(update={"lines": part})
    state = {
        "order_number": order.order_number,
        "revision": order.revision,
        "status": "reserved",
        "approved": shipped.model_dump(mode="json"),
        "lines": {str(l.line_no): {"sku": l.sku, "qty": l.quantity, "state": "reserved"} for l in part},
    }
    return Result(state, reserved_events(cause, shipped, stocks, now, complete=False), "partial reserved", True)


def _part_now_rest_later(
    cause: str, order: OrderApproved, stocks: dict[str, Stock], prefs: tuple[str, ...], now: datetime
) -> Result:
    """ship_partial with the remainder backordered: what is in stock is reserved and handed to fulfillment now
    (and never reallocated to a priority order any more); the rest waits as a `wait` choice would (promised from
    purchase orders, else purchased; made-to-order lines produced) and follows in a second allocation once every
    line is covered (`refill`). The order's status is `backordered` (or `in_production`) with the promise date,
    its details listing what ships now."""
    result = allocate(cause, order, stocks, prefs, now, wait=True, priority=False)
    if result.outcome == "reserved" or result.state is None:  # everything is in stock by now
        return result
    number = order.order_number or order.order_key
    sent: dict[str, dict[str, int]] = {}
    for l in order.lines:
        r, st = rid(number, l.line_no), stocks[l.sku]
        if st.reservations.get(r):
            sent[str(l.line_no)] = dict(st.reservations[r])
            st.own(r, {**st.owners.get(r, owner_of(order, now)), "consumed": True})  # in fulfillment's hands now
    alloc = allocation(cause, order, stocks, complete=False, more_to_come=True)
    promise = result.state.get("promise_date")
    details = {**_allocation_details(alloc), "more_to_come": True}
    status_out = _status(
        cause,
        order,
        result.outcome,
        now,
        promise_date=date.fromisoformat(promise) if promise else None,
        details=details,
    )
    outputs = [status_out, Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, alloc), *result.outputs[1:]]
    state = {**result.state, "sent": sent}
    return Result(state, outputs, f"part reserved, rest {result.outcome}", keep_stock=True)


def shipped_part(state: dict[str, Any], warehouse: str, lines: list[ShipmentLine]) -> dict[str, Any]:
    """The order's inventory state after a shipment left: what it took no longer counts as handed over but
    unshipped (`sent`), so a later allocation of the remainder is not reduced by it."""
    if "sent" not in state:
        return state
    sent = {k: dict(v) for k, v in state["sent"].items()}
    for l in lines:
        held = sent.get(str(l.line_no), {})
        if warehouse in held:
            held[warehouse] = max(0, held[warehouse] - l.quantity)
    return {**state, "sent": sent}


# ---- free stock to waiting orders ----
WAITING = ("backordered", "in_production")  # statuses of orders with lines in a stock's waiting queue
UNDECIDED = "awaiting_customer_decision"


def skus_of(state: dict[str, Any] | None) -> set[str]:
    """Every SKU an order's inventory state may touch: its lines, their substitutes, what it planned."""
    if not state or "approved" not in state:
        return set()
    order = OrderApproved.model_validate(state["approved"])
    planned = {v["sku"] for v in state.get("lines", {}).values()}
    return {l.sku for l in order.lines} | {s for l in order.lines for s in l.substitutes} | planned


def waiting_for(stocks: list[Stock]) -> list[str]:
    """The orders that free stock of `stocks` may go to: those with waiting lines or awaiting a decision."""
    return sorted({w["order_key"] for st in stocks for w in (*st.waiting.values(), *st.deciding.values())})


def refill(
    cause: str,
    skus: list[str],
    stocks: dict[str, Stock],
    orders: dict[str, dict[str, Any] | None],
    prefs: tuple[str, ...],
    now: datetime,
) -> dict[str, Result]:
    """Give the free stock of `skus` (released by a cancellation, amendment, reallocation or shortage decision,
    or arrived by a count, receipt or production) to the orders waiting for it, in the same unit of work.

    1. Backordered and in-production orders first (they were promised the goods): their waiting lines, oldest
       first, each filled whole (one warehouse first, else split) or skipped for a younger one that fits; an
       order whose every line is covered becomes `reserved` and gets its allocation.
    2. Then orders awaiting the customer's decision on a shortage (they hold nothing), oldest first: each is
       planned again and, only if every line can now be reserved, is reserved (reason `stock_available`; a
       decision sent later is refused as no longer awaited). Otherwise it keeps waiting for the customer's
       decision, untouched and not told again; a plan that would backorder or produce is not taken, since the
       customer was offered the options and has not chosen yet.
    `orders` holds the inventory state of every order `waiting_for` lists (by order key); `stocks` every SKU
    of those orders. Entries of orders no longer waiting are dropped. Returns each changed order's result."""
    out: dict[str, Result] = {}
    states = dict(orders)
    for sku in sorted(skus):
        st = stocks[sku]
        for r, w in st.queue():
            key, line_no = w["order_key"], r.rsplit("#", 1)[1]
            state = states.get(key)
            if not state or state.get("status") not in WAITING or line_no not in state.get("lines", {}):
                continue  # not this order's current plan: left alone rather than reserved for nobody
            if not st.fill(r, prefs):
                continue
            lines = {k: dict(v) for k, v in state["lines"].items()}
            lines[line_no]["state"] = "reserved"
            new = {**state, "lines": lines}
            outputs = list(out[key].outputs) if key in out else []
            if all(v["state"] == "reserved" for v in lines.values()):
                new.update(status="reserved", promise_date=None)
                order = OrderApproved.model_validate(state["approved"])
                if "sent" in state:  # the remainder of a part already handed over: its own allocation, no status
                    sent = new.pop("sent")
                    rest = allocation(f"{cause}:{key}", order, stocks, less=sent)
                    outputs.append(Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, rest))
                else:
                    outputs += reserved_events(f"{cause}:{key}", order, stocks, now)
            states[key] = new
            out[key] = Result(new, outputs, f"line {line_no} reserved", keep_stock=True)
    undecided = sorted(
        {(w["since"], w["order_key"]) for sku in skus for w in stocks[sku].deciding.values()},
    )
    why = Reason(code="stock_available", message="the stock the order was short of is available again")
    for key in dict.fromkeys(k for _, k in undecided):
        state = states.get(key)
        if not state or state.get("status") != UNDECIDED or "approved" not in state:
            _drop_decision(key, stocks)
            continue
        order = OrderApproved.model_validate(state["approved"])
        saved = {s: st.copy() for s, st in stocks.items()}
        result = allocate(f"{cause}:{key}", order, stocks, prefs, now, priority=False, reasons=[why])
        if result.outcome != "reserved":
            for s, st in stocks.items():
                st.restore(saved[s])
            continue
        states[key] = result.state
        out[key] = result
    return out


def _drop_decision(order_key: str, stocks: dict[str, Stock]) -> None:
    """Take a stale entry (the order decided, was cancelled or re-planned meanwhile) off the `deciding` lists."""
    for st in stocks.values():
        for r in [r for r, w in st.deciding.items() if w["order_key"] == order_key]:
            del st.deciding[r]


# ---- priority allocation (handbook 2.3.3) ----
def is_priority(order: OrderApproved) -> bool:
    """Urgent orders and VIP customers' orders may ask for stock held for normal orders."""
    return order.priority == "urgent" or order.vip


def owner_of(order: OrderApproved, now: datetime) -> dict[str, Any]:
    """What a stock document records about the order behind a reservation."""
    return {"order_key": order.order_key, "priority": order.priority, "vip": order.vip, "since": now.isoformat()}


def reallocation(
    order: OrderApproved,
    stocks: dict[str, Stock],
    lines: list[ApprovedLine] | None = None,
    allowed: set[str] | None = None,
) -> list[dict[str, Any]] | None:
    """What `order` would take from normal orders to cover its shortage of stock: one entry per reservation
    (order key and number, line, SKU, quantity lost); None when nothing is short or it cannot all be covered.

    Only movable reservations count (`Stock.movable`: normal, non-VIP, nothing dispatched), and an order with
    any unmovable reservation in `stocks` is no victim at all; `allowed` narrows the victims to those order keys.
    The fewest orders are taken: those holding the most of the SKU first, the youngest among equals. Make-to-order
    lines are left to production."""
    number = order.order_number or order.order_key
    own = f"{number}#"
    need: dict[str, int] = {}
    for l in lines or order.lines:
        if not l.make_to_order:
            held = sum(stocks[l.sku].reservations.get(rid(number, l.line_no), {}).values())
            need[l.sku] = need.get(l.sku, 0) + l.quantity - held
    short = {s: n - max(0, stocks[s].total_available()) for s, n in sorted(need.items())}
    short = {s: g for s, g in short.items() if g > 0}
    if not short:
        return None
    held_by: dict[str, dict[str, list[tuple[str, int]]]] = {}  # order key -> sku -> [(rid, qty)]
    since: dict[str, str] = {}
    blocked: set[str] = set()
    for sku, st in sorted(stocks.items()):
        for r, where in sorted(st.reservations.items()):
            owner = st.owners.get(r)
            if r.startswith(own) or owner is None:
                continue
            key = owner["order_key"]
            if not st.movable(r):
                blocked.add(key)
                continue
            held_by.setdefault(key, {}).setdefault(sku, []).append((r, sum(where.values())))
            since[key] = max(since.get(key, ""), str(owner.get("since", "")))
    victims = {k: h for k, h in held_by.items() if k not in blocked and (allowed is None or k in allowed)}
    chosen: list[str] = []
    takes: list[dict[str, Any]] = []
    for sku, gap in short.items():

        def holding(k: str, sku: str = sku) -> int:
            return sum(q for _, q in victims[k].get(sku, []))

        fresh = [k for k in sorted(victims) if k not in chosen and holding(k)]
        fresh.sort(key=lambda k: since[k], reverse=True)  # the youngest among equals
        fresh.sort(key=lambda k: -holding(k))  # stable: those holding the most first, so the fewest orders lose
        for k in [*chosen, *fresh]:  # orders already losing stock give theirs first
            if gap <= 0:
                break
            if not holding(k):
                continue
            if k not in chosen:
                chosen.append(k)
            for r, q in victims[k][sku]:
                take = min(q, gap)
                if take > 0:
                    number_of, line_no = r.rsplit("#", 1)
                    takes.append(
                        {
                            "order_key": k,
                            "order_number": number_of,
                            "line_no": int(line_no),
                            "sku": sku,
                            "quantity": take,
                        }
                    )
                    gap -= take
        if gap > 0:
            return None
    return takes


def _await_priority(
    cause: str,
    order: OrderApproved,
    stocks: dict[str, Stock],
    prefs: tuple[str, ...],
    now: datetime,
    lines: list[ApprovedLine],
    takes: list[dict[str, Any]],
    extra: list[Reason],
) -> Result:
    """Hold what is free for the stocked lines and ask for approval to take the rest from `takes`."""
    number = order.order_number or order.order_key
    owner = owner_of(order, now)
    plan: dict[str, Any] = {}
    short: list[ApprovedLine] = []
    for line in lines:
        if line.make_to_order:  # planned once the reallocation is decided
            plan[str(line.line_no)] = {"sku": line.sku, "qty": line.quantity, "state": "pending"}
            continue
        r, st = rid(number, line.line_no), stocks[line.sku]
        held = sum(st.reservations.get(r, {}).values())
        take = min(line.quantity - held, max(0, st.total_available()))
        if take > 0:
            st.reserve(r, st.plan(take, prefs) or {}, owner)
        full = held + max(0, take) >= line.quantity
        plan[str(line.line_no)] = {
            "sku": line.sku,
            "qty": line.quantity,
            "state": "reserved" if full else "awaiting_priority_approval",
        }
        if not full:
            short.append(line)
    state = {
        "order_number": number,
        "revision": order.revision,
        "approved": order.model_dump(mode="json"),
        "lines": plan,
        "status": "awaiting_priority_approval",
        "reallocation": takes,
    }
    reasons = [*extra, *(_insufficient(l, stocks) for l in short)]
    reasons.append(
        Reason(
            code="priority_reallocation_requested",
            message=f"{'urgent' if order.priority == 'urgent' else 'VIP'} order: stock held for "
            f"{len({t['order_key'] for t in takes})} normal order(s) can cover the shortage once approved",
        )
    )
    details = {
        "reallocation": [{k: t[k] for k in ("order_number", "line_no", "sku", "quantity")} for t in takes],
    }
    out = _status(cause, order, "awaiting_priority_approval", now, reasons=reasons, details=details)
    return Result(state, [out], "awaiting_priority_approval", keep_stock=True)


@dataclass
class Reallocated:
    """The priority order's result and each re-planned victim's (by order key); stock changes are final."""

    result: Result
    victims: dict[str, Result] = field(default_factory=dict)


def decide_priority(
    cmd: PriorityApproval,
    state: dict[str, Any],
    victims: dict[str, dict[str, Any] | None],
    stocks: dict[str, Stock],
    prefs: tuple[str, ...],
    now: datetime,
) -> Reallocated:
    """Carry out a supervisor's answer to a priority order awaiting approval (`state`).

    Approved: the orders listed in the request that still hold movable stock and are still normal, unshipped
    orders (`victims`: their inventory states, by order key) lose what the priority order needs, fewest first;
    the priority order is planned again and each victim is re-planned through the shortage path and told why
    (`reallocated_to_priority_order`). If the listed orders can no longer cover it, or on a denial, the priority
    order goes down the normal shortage path. `stocks` must hold every SKU of the orders involved."""
    order = OrderApproved.model_validate(state["approved"])
    number = order.order_number or order.order_key
    by = cmd.issued_by
    release_all(state, stocks)  # what it held while waiting is planned again with the rest
    if not cmd.approved:
        why = Reason(code="priority_reallocation_denied", message=f"reallocation denied by {by}")
        denied = allocate(cmd.command_id, order, stocks, prefs, now, priority=False, reasons=[why], decided_by=by)
        return Reallocated(denied)
    listed = {t["order_key"] for t in state.get("reallocation", [])}
    pool = {
        k: v
        for k, v in victims.items()
        if k in listed
        and v
        and "approved" in v
        and v.get("status") in HOLDING
        and not v.get("dispatched")
        and not v.get("sent")
    }
    takes = reallocation(order, stocks, allowed=set(pool))
    if takes is None and _short(order, stocks):
        why = Reason(
            code="priority_reallocation_unavailable",
            message="the stock the approval was asked for is no longer held by normal, unshipped orders",
        )
        return Reallocated(allocate(cmd.command_id, order, stocks, prefs, now, priority=False, reasons=[why]))
    losers = sorted({t["order_key"] for t in takes or []})
    for k in losers:
        release_all(pool[k], stocks)
    approved = Reason(
        code="priority_reallocation_approved",
        message=f"stock reallocated from {len(losers)} order(s), approved by {by}"
        if losers
        else f"approved by {by}; the stock needed is free by now, nothing reallocated",
    )
    out = Reallocated(
        allocate(cmd.command_id, order, stocks, prefs, now, priority=False, reasons=[approved], decided_by=by)
    )
    for k in losers:
        victim = OrderApproved.model_validate(pool[k]["approved"])
        lost = [t for t in takes or [] if t["order_key"] == k]
        lost_why = [
            Reason(
                code="reallocated_to_priority_order",
                field=f"lines[line_no={t['line_no']}]",
                message=f"{t['quantity']} × {t['sku']} reallocated to priority order {number}",
            )
            for t in lost
        ]
        cause = f"{cmd.command_id}:{k}"  # one status event id per order told
        result = allocate(cause, victim, stocks, prefs, now, priority=False, reasons=lost_why, decided_by=by)
        if pool[k].get("status") == "reserved":  # fulfillment opened shipments for the stock now gone
            result.outputs.insert(0, revoked(cause, victim, f"stock reallocated to priority order {number}"))
        out.victims[k] = result
    return out


def _short(order: OrderApproved, stocks: dict[str, Stock]) -> bool:
    """Whether the order's stocked lines need more than is free."""
    need: dict[str, int] = {}
    for l in order.lines:
        if not l.make_to_order:
            need[l.sku] = need.get(l.sku, 0) + l.quantity
    return any(n > max(0, stocks[s].total_available()) for s, n in need.items())
