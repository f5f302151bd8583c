"""Inventory's decisions (handbook 2.3): reserve, backorder, produce, ask the customer, or (for a priority
order) ask a supervisor to reallocate stock held for normal orders.

Every public decision is pure: it reads a `View` (order states and stocks) and returns a `Decision` (the new
states and the events); the stocks it was given are left as they were (it works on its own copies)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    StockShipped,
    SupplyNeeded,
)
from contracts.public import (
    PriorityApproval,
    ProductionUpdated,
    PurchaseOrderUpdated,
    ShipmentLine,
    ShortageDecision,
    StockCounted,
    StockReceived,
)
from services.inventory.stock import Deciding, Owner, PurchaseOrder, Stock, Waiting
from services.inventory.store import LinePlan, Options, OrderState, Take, View, WaitOption, attach
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import order_key, order_status, status, unknown_order

RULES = "inventory-allocation/1"
SERVICE = "inventory"
HOLDING = ("reserved", "backordered", "in_production")  # order statuses whose reservations a priority may take
WAITING = ("backordered", "in_production")  # statuses of orders with lines in a stock's waiting queue
UNDECIDED = "awaiting_customer_decision"
NOTHING_TO_SHIP = "nothing to ship"
Stocks = dict[str, Stock]  # a decision's own working copies, by SKU
Command = ShortageDecision | PriorityApproval


@dataclass(frozen=True)
class Result:
    """One order's new inventory state, its events, and what happened (for the log)."""

    state: OrderState
    outputs: tuple[Outgoing, ...] = ()
    outcome: str = "ignored"


@dataclass(frozen=True)
class Decision:
    """A message's effect: the orders to record (each with its events) and the stocks after.

    `refill`: stock may have been freed, so the orders waiting for it are to be served (`refilled`) in the
    same unit of work. `loose`: answers recorded on no document. `dead_letter`: the input is refused whole
    with this reason and nothing changes."""

    new_state: View
    events: Mapping[str, tuple[Outgoing, ...]] = field(default_factory=dict)
    outcome: str = "ignored"
    refill: bool = False
    loose: tuple[Outgoing, ...] = ()
    dead_letter: str | None = None


def _decided(stocks: Stocks, results: Mapping[str, Result], outcome: str, refill: bool = False) -> Decision:
    orders = {k: r.state for k, r in results.items()}
    return Decision(View(orders, stocks), {k: r.outputs for k, r in results.items()}, outcome, refill)


def _copy(stocks: Mapping[str, Stock]) -> Stocks:
    return {s: st.copy() for s, st in stocks.items()}


def rid(order_number: str, line_no: int) -> str:
    """The reservation id of one order line."""
    return f"{order_number}#{line_no}"


def _number(order: OrderApproved) -> str:
    return order.order_number or order.order_key


def line_skus(order: OrderApproved) -> set[str]:
    """The SKUs of an approved order's lines (without their substitutes)."""
    return {l.sku for l in order.lines}


def skus_of(order: OrderApproved) -> set[str]:
    """The SKUs an approved order may take stock of: its lines and their substitutes."""
    return line_skus(order) | {s for l in order.lines for s in l.substitutes}


# ---- the messages ----
def approved(view: View, msg: OrderApproved, prefs: tuple[str, ...], now: datetime) -> Decision:
    """An approved revision is planned afresh (what an older one held is released first); a cancelled order
    only gives back what an interrupted batch may have reserved for it; an older revision is ignored.
    Fulfillment's shipments of a replaced plan are revoked; a shipped order keeps its `dispatched` mark."""
    key, state, w = msg.order_key, view.orders.get(msg.order_key), _copy(view.stocks)
    if state is not None and state.status == "cancelled":
        leftover = _release_lines(msg, w)
        return _decided(
            w, {key: Result(state)}, f"ignored: cancelled ({leftover} units left by a batch released)", True
        )
    if state is not None and msg.revision < state.revision:
        return _decided(w, {key: Result(state)}, "ignored: older revision")
    released = release_all(state, w)
    result = _allocate(w, msg.event_id, msg, prefs, now)
    new, outputs = result.state, result.outputs
    if state is not None and state.dispatched:  # a shipped order never loses stock to a priority
        new = replace(new, dispatched=state.dispatched)
    if state is not None and state.approved is not None and (state.status == "reserved" or state.sent):
        outputs = (revoked(msg.event_id, state.approved, f"order amended to revision {msg.revision}"), *outputs)
    return _decided(w, {key: Result(new, outputs)}, f"{result.outcome} {msg.order_number}", released > 0)


def cancelled(view: View, msg: OrderCancelled) -> Decision:
    """A cancellation releases everything the order holds or is promised (for the waiting orders to take);
    later approvals of it are ignored."""
    state, w = view.orders.get(msg.order_key), _copy(view.stocks)
    new = Result(_cancelled(state, msg))
    if state is None or state.approved is None:
        return _decided(w, {msg.order_key: new}, "cancelled: nothing held")
    released = release_all(state, w)
    return _decided(w, {msg.order_key: new}, f"cancelled: released {released} units", refill=True)


def shipped(view: View, msg: StockShipped) -> Decision:
    """Shipped goods leave on hand and their reservations, once: a stock that lists the shipment among its
    `shipped` consumed it already (its order's document was not written). The order remembers the shipment, so
    none of its stock is reallocated to a priority order any more, and its stocks list it until then."""
    w = _copy(view.stocks)
    for line in msg.lines:
        if msg.shipment_id not in view.stocks[line.sku].shipped:
            w[line.sku].consume(rid(msg.order_number or msg.order_key, line.line_no), msg.warehouse, line.quantity)
    state = view.orders.get(msg.order_key)
    if state is None:  # an order inventory never planned: its stocks' inboxes remember the shipment
        return _decided(w, {}, f"consumed for {msg.shipment_id}")
    for line in msg.lines:
        w[line.sku].shipped[msg.shipment_id] = msg.order_key
    new = shipped_part(state, msg.warehouse, msg.lines)
    new = replace(new, dispatched=tuple(sorted({*state.dispatched, msg.shipment_id})))
    return _decided(w, {msg.order_key: Result(new)}, f"consumed for {msg.shipment_id}")


def counted(view: View, msg: StockCounted) -> Decision:
    """A count sets on hand; a count below what is reserved is refused whole (resolve the reservations first)."""
    reserved = view.stocks[msg.sku].reserved(msg.warehouse)
    if msg.on_hand < reserved:
        why = (
            f"count of {msg.on_hand} for {msg.sku}@{msg.warehouse} is below the {reserved} units reserved: "
            "resolve the reservations first"
        )
        return Decision(View(), outcome="refused: count below reserved", dead_letter=why)
    w = _copy(view.stocks)
    w[msg.sku].on_hand[msg.warehouse] = msg.on_hand
    return _decided(w, {}, f"counted {msg.sku}@{msg.warehouse}={msg.on_hand}", refill=True)


def received(view: View, msg: StockReceived) -> Decision:
    """Received goods go on hand (and off their purchase order's in-transit quantity)."""
    w = _copy(view.stocks)
    st = w[msg.sku]
    st.on_hand[msg.warehouse] = st.on_hand.get(msg.warehouse, 0) + msg.quantity
    if msg.po_number and msg.po_number in st.incoming:
        po = st.incoming[msg.po_number]
        po.quantity = max(0, po.quantity - msg.quantity)
    return _decided(w, {}, f"received {msg.quantity} {msg.sku}@{msg.warehouse}", refill=True)


def purchase_order(view: View, msg: PurchaseOrderUpdated) -> Decision:
    """A purchase order's quantity, ETA or status changes; what of it is promised stays promised."""
    w = _copy(view.stocks)
    old = w[msg.sku].incoming.get(msg.po_number)
    promised = old.promised if old else {}
    w[msg.sku].incoming[msg.po_number] = PurchaseOrder(msg.warehouse, msg.quantity, msg.eta, msg.status, promised)
    return _decided(w, {}, f"po {msg.po_number} {msg.status}")


def production(view: View, msg: ProductionUpdated, prefs: tuple[str, ...]) -> Decision:
    """Finished production goes on hand in the first preferred warehouse, first to the order that asked."""
    w = _copy(view.stocks)
    outcome = f"production {msg.production_request_id} {msg.status}"
    if msg.status != "done":
        return _decided(w, {}, outcome)
    st, wh = w[msg.sku], prefs[0] if prefs else "MAIN"
    st.on_hand[wh] = st.on_hand.get(wh, 0) + msg.quantity
    for r, line in list(st.waiting.items()):
        if line.get("request_id") == msg.production_request_id:
            st.waiting[r] = {**line, "since": "0"}  # the produced goods go first to the order that asked for them
    return _decided(w, {}, outcome, refill=True)


def shortage(view: View, cmd: ShortageDecision, prefs: tuple[str, ...], now: datetime) -> Decision:
    """The customer's choice for an order awaiting it; refused for any other order, or an unknown one."""
    key = order_key(cmd.channel, cmd.channel_order_ref)
    state = view.orders.get(key)
    if state is None:
        return Decision(View(), outcome="refused: unknown order", loose=(unknown_order(cmd, SERVICE, now),))
    if state.status != UNDECIDED or state.approved is None:
        return Decision(View({key: state}), {key: (refused(cmd, state, now),)}, "refused: no decision awaited")
    w = _copy(view.stocks)
    result = _decide_shortage(cmd, state, state.approved, w, prefs, now)
    refill = result.outcome != NOTHING_TO_SHIP
    return _decided(w if refill else {}, {key: result}, f"{cmd.choice}: {result.outcome}", refill)


def priority_victims(state: OrderState | None) -> list[str]:
    """The orders a priority order awaiting approval asked to take stock from."""
    return sorted({t.order_key for t in state.reallocation}) if state is not None else []


def priority(view: View, cmd: PriorityApproval, prefs: tuple[str, ...], now: datetime) -> Decision:
    """A supervisor's answer to a priority order awaiting approval (`view` holds its `priority_victims`);
    refused for any other order, or an unknown one."""
    key = order_key(cmd.channel, cmd.channel_order_ref)
    state = view.orders.get(key)
    if state is None:
        return Decision(View(), outcome="refused: unknown order", loose=(unknown_order(cmd, SERVICE, now),))
    if state.status != "awaiting_priority_approval" or state.approved is None:
        refusal = refused(cmd, state, now)
        return Decision(View({key: state}), {key: (refusal,)}, "refused: no priority approval awaited")
    w = _copy(view.stocks)
    victims = {k: view.orders.get(k) for k in priority_victims(state)}
    out = _decide_priority(cmd, state, state.approved, victims, w, prefs, now)
    verdict = "approved" if cmd.approved else "denied"
    outcome = f"priority {verdict}: {out.result.outcome}; {len(out.victims)} order(s) re-planned"
    return _decided(w, {key: out.result, **out.victims}, outcome, refill=True)


def waiting_for(decision: Decision) -> list[str]:
    """The orders that stock a decision left free may go to: those with waiting lines or awaiting a decision."""
    free = [st for st in decision.new_state.stocks.values() if st.total_available() > 0]
    return sorted({w["order_key"] for st in free for w in (*st.waiting.values(), *st.deciding.values())})


def refilled(decision: Decision, more: View, cause: str, prefs: tuple[str, ...], now: datetime) -> Decision:
    """The decision with the free stock it left given to the orders waiting for it (`more`: their states and
    every stock they need, as loaded; the decision's own states and stocks take precedence)."""
    skus = sorted(s for s, st in decision.new_state.stocks.items() if st.total_available() > 0)
    w = attach({**more.stocks, **decision.new_state.stocks}, more.orders)  # copies, the waiting orders' holds listed
    served = _refill(cause, skus, w, {**more.orders, **decision.new_state.orders}, prefs, now)
    orders = {**decision.new_state.orders, **{k: r.state for k, r in served.items()}}
    events = {k: (*decision.events.get(k, ()), *(served[k].outputs if k in served else ())) for k in orders}
    outcome = f"{decision.outcome}; {len(served)} waiting order(s) served"
    return Decision(View(orders, w), events, outcome, loose=decision.loose)


# ---- planning one order ----
def _allocate(
    w: Stocks,
    cause: str,
    order: OrderApproved,
    prefs: tuple[str, ...],
    now: datetime,
    lines: Sequence[ApprovedLine] | None = None,
    wait: bool = False,
    *,
    priority: bool = True,
    reasons: Sequence[Reason] = (),
    decided_by: str = RULES,
) -> Result:
    """Reserve every line, or backorder / produce the gaps, or (holding nothing) offer the customer options.

    A priority order (urgent or VIP; unless `priority` is off) short of stock that normal orders hold
    movably instead holds what is free and awaits a supervisor's approval to take the rest.
    `reasons` go first on every status this emits (e.g. why the order is being re-planned).
    An order left awaiting the customer's decision holds nothing (what was tried is not kept) and is listed
    under `deciding` in the stock of each of its lines, for `refilled`; any other outcome drops it from there."""
    since = min((d["since"] for st in w.values() for d in _decisions(order, st).values()), default=None)
    lines = lines or order.lines
    trial = {**w, **_copy({l.sku: w[l.sku] for l in lines})}  # planning changes the stock of its lines only
    result = _plan(cause, order, trial, prefs, now, lines, wait, priority, list(reasons), decided_by)
    undecided = result.outcome == UNDECIDED
    if not undecided:
        w.update(trial)
    _forget_decision(order, w)
    if undecided:  # listed again under its current lines, keeping its place in the queue
        for line in order.lines:
            r = rid(_number(order), line.line_no)
            w[line.sku].deciding[r] = Deciding(order_key=order.order_key, since=since or now.isoformat())
    return result


def _decisions(order: OrderApproved, st: Stock) -> dict[str, Deciding]:
    """The order's entries on one stock's `deciding` list."""
    number = _number(order)
    return {r: d for r, d in st.deciding.items() if r.rsplit("#", 1)[0] == number}


def _forget_decision(order: OrderApproved, w: Stocks) -> None:
    """The order no longer awaits a decision: take its lines off every loaded stock's `deciding` list."""
    for st in w.values():
        for r in _decisions(order, st):
            del st.deciding[r]


def _plan(
    cause: str,
    order: OrderApproved,
    w: Stocks,
    prefs: tuple[str, ...],
    now: datetime,
    lines: Sequence[ApprovedLine],
    wait: bool,
    priority: bool,
    extra: list[Reason],
    decided_by: str,
) -> Result:
    number, owner = _number(order), owner_of(order, now)
    if priority and is_priority(order):
        takes = reallocation(order, w, lines)
        if takes:
            return _await_priority(cause, order, w, prefs, now, lines, takes, extra)
    plan: dict[str, LinePlan] = {}
    short: list[ApprovedLine] = []
    promise: date | None = None
    needs: list[SupplyNeeded] = []
    for line in lines:
        r, st = rid(number, line.line_no), w[line.sku]
        held = sum(st.reservations.get(r, {}).values())
        if held >= line.quantity:
            plan[str(line.line_no)] = LinePlan(line.sku, line.quantity, "reserved")
            continue
        where = st.plan(line.quantity - held, prefs)
        if where is not None:
            st.reserve(r, where, owner)
            plan[str(line.line_no)] = LinePlan(line.sku, line.quantity, "reserved")
            continue
        avail = max(0, st.total_available())
        gap = line.quantity - held - avail
        if line.make_to_order:
            due = (now + timedelta(days=line.production_lead_days)).date()
            request = f"PR-{number}-{line.line_no}"
            qty = line.quantity - held
            st.waiting[r] = Waiting(
                order_key=order.order_key, qty=qty, since=now.isoformat(), request_id=request, kind="production"
            )
            st.own(r, owner)
            needs.append(_need(order, "production", request, line, qty, due))
            plan[str(line.line_no)] = LinePlan(line.sku, line.quantity, "in_production")
            promise = max(promise or due, due)
            continue
        eta = st.promise(r, gap, date.max if wait else order.requested_date)
        if eta is None and wait:
            request = f"PO-REQ-{number}-{line.line_no}"
            needs.append(_need(order, "purchase", request, line, gap, order.requested_date))
        if eta is not None or wait:
            if avail:
                st.reserve(r, st.plan(avail, prefs) or {}, owner)
            st.waiting[r] = Waiting(order_key=order.order_key, qty=gap, since=now.isoformat(), kind="backorder")
            st.own(r, owner)
            plan[str(line.line_no)] = LinePlan(line.sku, line.quantity, "backordered")
            if eta is not None:
                promise = max(promise or eta, eta)
            continue
        short.append(line)
    state = OrderState(UNDECIDED, order.revision, number, order, plan)
    if short:
        options = _options(order, short, w)
        why = extra + [_insufficient(l, w) for l in short]
        details = {"options": options}
        out = order_status(cause, order, UNDECIDED, now, reasons=why, details=details, decided_by=decided_by)
        return Result(replace(state, options=options, lines={}), (out,), UNDECIDED)
    states = {p.state for p in plan.values()}
    if states == {"reserved"}:
        outs = reserved_events(cause, order, w, now, reasons=extra, decided_by=decided_by)
        return Result(replace(state, status="reserved"), tuple(outs), "reserved")
    name = "in_production" if "in_production" in states else "backordered"
    out = order_status(cause, order, name, now, promise_date=promise, reasons=extra, decided_by=decided_by)
    needed = (Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, n) for n in needs)
    return Result(replace(state, status=name, promise_date=promise), (out, *needed), name)


def _insufficient(line: ApprovedLine, w: Mapping[str, Stock]) -> Reason:
    return Reason(
        code="insufficient_stock",
        field=f"lines[line_no={line.line_no}]",
        message=f"{line.sku}: {line.quantity} ordered, {max(0, w[line.sku].total_available())} available",
    )


def _need(order: OrderApproved, kind: str, request: str, line: ApprovedLine, qty: int, due: date) -> SupplyNeeded:
    return SupplyNeeded(
        event_id=derive_id("need", request),
        **order.identity(),
        kind=kind,
        request_id=request,
        sku=line.sku,
        quantity=qty,
        needed_by=due,
    )


def _options(order: OrderApproved, short: list[ApprovedLine], w: Mapping[str, Stock]) -> Options:
    """The shortage options as the status offers them (a public payload, also kept on the order's state)."""
    partial = {str(l.line_no): l.quantity for l in order.lines}
    for l in short:
        partial[str(l.line_no)] = max(0, w[l.sku].total_available())
    etas = [w[l.sku].best_eta(l.quantity - max(0, w[l.sku].total_available())) for l in short]
    waits = [e for e in etas if e is not None]
    substitutes = {
        str(l.line_no): [s for s in l.substitutes if s in w and w[s].total_available() >= l.quantity] for l in short
    }
    return Options(
        ship_partial=partial,
        remainder=["cancel", "backorder"],  # with ship_partial: the rest cancelled, or backordered and sent later
        wait=WaitOption(promise_date=max(waits).isoformat() if waits and len(waits) == len(etas) else None),
        substitute=substitutes,
        cancel=True,
    )


def allocation(
    cause: str,
    order: OrderApproved,
    stocks: Mapping[str, Stock],
    *,
    complete: bool = True,
    more_to_come: bool = False,
    less: Mapping[str, Mapping[str, int]] | None = None,
) -> AllocationReserved:
    """What fulfillment ships from: the order's reservations by warehouse, less what an earlier allocation of it
    already handed over and is not yet shipped (`less`: line -> warehouse -> units)."""
    number = _number(order)
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
    stocks: Mapping[str, Stock],
    now: datetime,
    complete: bool = True,
    *,
    reasons: list[Reason] | None = None,
    decided_by: str = RULES,
) -> list[Outgoing]:
    """The `reserved` status and the allocation fulfillment ships from (one shipment per warehouse)."""
    alloc = allocation(cause, order, stocks, complete=complete)
    details = _allocation_details(alloc)
    return [
        order_status(cause, order, "reserved", now, details=details, reasons=reasons, decided_by=decided_by),
        Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, alloc),
    ]


def release_all(state: OrderState | None, w: Stocks) -> int:
    """Release every reservation and promise the order holds in `w`; returns units released."""
    return 0 if state is None or state.approved is None else _release_lines(state.approved, w)


def _release_lines(order: OrderApproved, w: Stocks) -> int:
    number = _number(order)
    return sum(w[l.sku].release(rid(number, l.line_no)) for l in order.lines if l.sku in w)


def revoked(cause: str, order: OrderApproved, reason: str) -> Outgoing:
    """Withdraw the allocation fulfillment ships from (its stock went elsewhere): the order's shipments not yet
    dispatched are voided. Sent on the allocations topic under the order's key, ahead of any new allocation."""
    ev = AllocationRevoked(event_id=derive_id("revoked", cause), **order.identity(), reason=reason)
    return Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, ev)


def _cancelled(state: OrderState | None, event: OrderCancelled) -> OrderState:
    """The order's inventory state after a cancellation: nothing held, later approvals ignored."""
    if state is None:
        return OrderState("cancelled", event.revision, event.order_number)
    return replace(state, status="cancelled", lines={}, sent=None)


def cancel_event(cause: str, order: OrderApproved, reason: str, by: str, now: datetime) -> tuple[Outgoing, ...]:
    """A customer's cancel choice: status `cancelled` and the cancellation every service compensates for."""
    ev = OrderCancelled(event_id=derive_id("cancelled", cause), **order.identity(), reason=reason, cancelled_by=by)
    why = [Reason(code="customer_cancelled", message=reason)]
    return (
        order_status(cause, order, "cancelled", now, reasons=why, decided_by=by),
        Outgoing.of(topics.ORDERS_CANCELLED, order.order_key, ev),
    )


def refused(cmd: Command, state: OrderState, now: datetime, why: Reason | None = None) -> Outgoing:
    """A shortage decision or priority approval that cannot be carried out (by default: the order awaits
    none); the answer restates the order's status, and nothing changes."""
    awaited = "a shortage decision" if isinstance(cmd, ShortageDecision) else "a priority approval"
    why = why or Reason(
        code="no_decision_awaited" if isinstance(cmd, ShortageDecision) else "no_priority_approval_awaited",
        field="command_id",
        message=f"order is {state.status}, not awaiting {awaited}",
    )
    return status(
        cmd.command_id,
        cmd.channel,
        cmd.channel_order_ref,
        state.status,
        now,
        revision=state.revision,
        order_number=state.order_number,
        reasons=[why],
        details={"refused": cmd.type},
        decided_by=cmd.issued_by,
    )


# ---- the customer's shortage decision ----
def _decide_shortage(
    cmd: ShortageDecision,
    state: OrderState,
    order: OrderApproved,
    w: Stocks,
    prefs: tuple[str, ...],
    now: datetime,
) -> Result:
    """Carry out the customer's choice: ship the available part, wait, substitute, or cancel."""
    cause = cmd.command_id
    if cmd.choice == "cancel":
        _forget_decision(order, w)
        outputs = cancel_event(cause, order, "customer chose to cancel", cmd.issued_by, now)
        return Result(OrderState("cancelled", order.revision, order.order_number), outputs, "cancelled")
    if cmd.choice == "wait":
        return _allocate(w, cause, order, prefs, now, wait=True, priority=False)
    if cmd.choice == "substitute":
        sub = cmd.substitute_sku
        lines = [
            l.model_copy(update={"sku": sub})
            if sub and sub in l.substitutes and sub in w and w[l.sku].total_available() < l.quantity
            else l
            for l in order.lines
        ]
        return _allocate(w, cause, order.model_copy(update={"lines": lines}), prefs, now, priority=False)
    if not any(w[l.sku].total_available() > 0 for l in order.lines):
        why = Reason(code="nothing_available", field="choice", message="nothing of the order is in stock now")
        return Result(state, (refused(cmd, state, now, why),), NOTHING_TO_SHIP)
    if cmd.remainder == "backorder":
        return _part_now_rest_later(cause, order, w, prefs, now)
    part = []
    for l in order.lines:
        take = min(l.quantity, max(0, w[l.sku].total_available()))
        if take:
            w[l.sku].reserve(rid(_number(order), l.line_no), w[l.sku].plan(take, prefs) or {}, owner_of(order, now))
            part.append(l.model_copy(update={"quantity": take}))
    _forget_decision(order, w)
    shipped = order.model_copy(update={"lines": part})
    plan = {str(l.line_no): LinePlan(l.sku, l.quantity, "reserved") for l in part}
    new = OrderState("reserved", order.revision, order.order_number, shipped, plan)
    return Result(new, tuple(reserved_events(cause, shipped, w, now, complete=False)), "partial reserved")


def _part_now_rest_later(cause: str, order: OrderApproved, w: Stocks, prefs: tuple[str, ...], now: datetime) -> Result:
    """ship_partial with the remainder backordered: what is in stock is reserved and handed to fulfillment now
    (and never reallocated to a priority order any more); the rest waits as a `wait` choice would (promised from
    purchase orders, else purchased; made-to-order lines produced) and follows in a second allocation once every
    line is covered (`refilled`). The order's status is `backordered` (or `in_production`) with the promise
    date, its details listing what ships now."""
    result = _allocate(w, cause, order, prefs, now, wait=True, priority=False)
    if result.outcome == "reserved":  # everything is in stock by now
        return result
    number = _number(order)
    sent: dict[str, dict[str, int]] = {}
    for l in order.lines:
        r, st = rid(number, l.line_no), w[l.sku]
        if st.reservations.get(r):
            sent[str(l.line_no)] = dict(st.reservations[r])
            st.own(r, Owner(**st.owners.get(r, owner_of(order, now)), consumed=True))  # in fulfillment's hands now
    alloc = allocation(cause, order, w, complete=False, more_to_come=True)
    details = {**_allocation_details(alloc), "more_to_come": True}
    promise = result.state.promise_date
    status_out = order_status(
        cause, order, result.outcome, now, promise_date=promise, details=details, decided_by=RULES
    )
    outputs = (status_out, Outgoing.of(topics.INVENTORY_ALLOCATIONS, order.order_key, alloc), *result.outputs[1:])
    return Result(replace(result.state, sent=sent), outputs, f"part reserved, rest {result.outcome}")


def shipped_part(state: OrderState, warehouse: str, lines: Sequence[ShipmentLine]) -> OrderState:
    """The order's inventory state after a shipment left: what it took no longer counts as handed over but
    unshipped (`sent`), so a later allocation of the remainder is not reduced by it."""
    if state.sent is None:
        return state
    sent = {k: dict(v) for k, v in state.sent.items()}
    for l in lines:
        held = sent.get(str(l.line_no), {})
        if warehouse in held:
            held[warehouse] = max(0, held[warehouse] - l.quantity)
    return replace(state, sent=sent)


# ---- free stock to waiting orders ----
def _refill(
    cause: str,
    skus: list[str],
    w: Stocks,
    orders: Mapping[str, OrderState | None],
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
    `orders` holds the state of every order waiting on `skus` (by order key); `w` every SKU of those orders.
    Entries of orders no longer waiting are dropped. Returns each changed order's result."""
    out: dict[str, Result] = {}
    states = dict(orders)
    for sku in sorted(skus):
        st = w[sku]
        for r, line in st.queue():
            key, line_no = line["order_key"], r.rsplit("#", 1)[1]
            state = states.get(key)
            if state is None or state.status not in WAITING or line_no not in state.lines:
                continue  # not this order's current plan: left alone rather than reserved for nobody
            if state.approved is None or not st.fill(r, prefs):
                continue
            new = replace(state, lines={**state.lines, line_no: replace(state.lines[line_no], state="reserved")})
            outputs = out[key].outputs if key in out else ()
            if all(p.state == "reserved" for p in new.lines.values()):
                new = replace(new, status="reserved", promise_date=None, sent=None)
                if state.sent is not None:  # the remainder of a part already handed over: its own allocation
                    rest = allocation(f"{cause}:{key}", state.approved, w, less=state.sent)
                    outputs += (Outgoing.of(topics.INVENTORY_ALLOCATIONS, key, rest),)
                else:
                    outputs += tuple(reserved_events(f"{cause}:{key}", state.approved, w, now))
            states[key] = new
            out[key] = Result(new, outputs, f"line {line_no} reserved")
    undecided = sorted({(d["since"], d["order_key"]) for sku in skus for d in w[sku].deciding.values()})
    why = Reason(code="stock_available", message="the stock the order was short of is available again")
    for key in dict.fromkeys(k for _, k in undecided):
        state = states.get(key)
        if state is None or state.status != UNDECIDED or state.approved is None:
            _drop_decision(key, w)
            continue
        trial = _copy(w)
        result = _allocate(trial, f"{cause}:{key}", state.approved, prefs, now, priority=False, reasons=[why])
        if result.outcome == "reserved":
            w.update(trial)
            states[key] = result.state
            out[key] = result
    return out


def _drop_decision(key: str, w: Stocks) -> None:
    """Take a stale entry (the order decided, was cancelled or re-planned meanwhile) off the `deciding` lists."""
    for st in w.values():
        for r in [r for r, d in st.deciding.items() if d["order_key"] == key]:
            del st.deciding[r]


# ---- priority allocation (handbook 2.3.3) ----
def is_priority(order: OrderApproved) -> bool:
    """Urgent orders and VIP customers' orders may ask for stock held for normal orders."""
    return order.priority == "urgent" or order.vip


def owner_of(order: OrderApproved, now: datetime) -> Owner:
    """What a stock document records about the order behind a reservation."""
    return Owner(order_key=order.order_key, priority=order.priority, vip=order.vip, since=now.isoformat())


def reallocation(
    order: OrderApproved,
    stocks: Mapping[str, Stock],
    lines: Sequence[ApprovedLine] | None = None,
    allowed: set[str] | None = None,
) -> list[Take] | None:
    """What `order` would take from normal orders to cover its shortage of stock: one entry per reservation
    (order key and number, line, SKU, quantity lost); None when nothing is short or it cannot all be covered.

    Only movable reservations count (`Stock.movable`: normal, non-VIP, nothing dispatched), and an order with
    any unmovable reservation in `stocks` is no victim at all; `allowed` narrows the victims to those order keys.
    The fewest orders are taken: those holding the most of the SKU first, the youngest among equals. Make-to-order
    lines are left to production."""
    number = _number(order)
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
    takes: list[Take] = []
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
                    takes.append(Take(k, number_of, int(line_no), sku, take))
                    gap -= take
        if gap > 0:
            return None
    return takes


def _await_priority(
    cause: str,
    order: OrderApproved,
    w: Stocks,
    prefs: tuple[str, ...],
    now: datetime,
    lines: Sequence[ApprovedLine],
    takes: list[Take],
    extra: list[Reason],
) -> Result:
    """Hold what is free for the stocked lines and ask for approval to take the rest from `takes`."""
    number, owner = _number(order), owner_of(order, now)
    plan: dict[str, LinePlan] = {}
    short: list[ApprovedLine] = []
    for line in lines:
        if line.make_to_order:  # planned once the reallocation is decided
            plan[str(line.line_no)] = LinePlan(line.sku, line.quantity, "pending")
            continue
        r, st = rid(number, line.line_no), w[line.sku]
        held = sum(st.reservations.get(r, {}).values())
        take = min(line.quantity - held, max(0, st.total_available()))
        if take > 0:
            st.reserve(r, st.plan(take, prefs) or {}, owner)
        full = held + max(0, take) >= line.quantity
        plan[str(line.line_no)] = LinePlan(
            line.sku, line.quantity, "reserved" if full else "awaiting_priority_approval"
        )
        if not full:
            short.append(line)
    state = OrderState("awaiting_priority_approval", order.revision, number, order, plan, reallocation=tuple(takes))
    reasons = [*extra, *(_insufficient(l, w) for l in short)]
    reasons.append(
        Reason(
            code="priority_reallocation_requested",
            message=f"{'urgent' if order.priority == 'urgent' else 'VIP'} order: stock held for "
            f"{len({t.order_key for t in takes})} normal order(s) can cover the shortage once approved",
        )
    )
    details = {"reallocation": [t.public() for t in takes]}
    out = order_status(
        cause, order, "awaiting_priority_approval", now, reasons=reasons, details=details, decided_by=RULES
    )
    return Result(state, (out,), "awaiting_priority_approval")


@dataclass(frozen=True)
class _Reallocated:
    """The priority order's result and each re-planned victim's (by order key)."""

    result: Result
    victims: dict[str, Result] = field(default_factory=dict)


def _decide_priority(
    cmd: PriorityApproval,
    state: OrderState,
    order: OrderApproved,
    victims: Mapping[str, OrderState | None],
    w: Stocks,
    prefs: tuple[str, ...],
    now: datetime,
) -> _Reallocated:
    """Carry out a supervisor's answer to a priority order awaiting approval (`state`).

    Approved: the orders listed in the request that still hold movable stock and are still normal, unshipped
    orders (`victims`: their inventory states, by order key) lose what the priority order needs, fewest first;
    the priority order is planned again and each victim is re-planned through the shortage path and told why
    (`reallocated_to_priority_order`). If the listed orders can no longer cover it, or on a denial, the priority
    order goes down the normal shortage path. `w` must hold every SKU of the orders involved."""
    number, by = _number(order), cmd.issued_by
    release_all(state, w)  # what it held while waiting is planned again with the rest
    if not cmd.approved:
        why = Reason(code="priority_reallocation_denied", message=f"reallocation denied by {by}")
        return _Reallocated(
            _allocate(w, cmd.command_id, order, prefs, now, priority=False, reasons=[why], decided_by=by)
        )
    pool = {
        k: v
        for k, v in victims.items()
        if v is not None and v.approved is not None and v.status in HOLDING and not v.dispatched and not v.sent
    }
    takes = reallocation(order, w, allowed=set(pool))
    if takes is None and is_short(order, w):
        why = Reason(
            code="priority_reallocation_unavailable",
            message="the stock the approval was asked for is no longer held by normal, unshipped orders",
        )
        return _Reallocated(_allocate(w, cmd.command_id, order, prefs, now, priority=False, reasons=[why]))
    losers = sorted({t.order_key for t in takes or []})
    for k in losers:
        release_all(pool[k], w)
    approved = Reason(
        code="priority_reallocation_approved",
        message=f"stock reallocated from {len(losers)} order(s), approved by {by}"
        if losers
        else f"approved by {by}; the stock needed is free by now, nothing reallocated",
    )
    out = _Reallocated(
        _allocate(w, cmd.command_id, order, prefs, now, priority=False, reasons=[approved], decided_by=by)
    )
    for k in losers:
        victim, lost = pool[k], [t for t in takes or [] if t.order_key == k]
        assert victim is not None and victim.approved is not None  # the pool holds approved orders only
        lost_why = [
            Reason(
                code="reallocated_to_priority_order",
                field=f"lines[line_no={t.line_no}]",
                message=f"{t.quantity} × {t.sku} reallocated to priority order {number}",
            )
            for t in lost
        ]
        cause = f"{cmd.command_id}:{k}"  # one status event id per order told
        result = _allocate(w, cause, victim.approved, prefs, now, priority=False, reasons=lost_why, decided_by=by)
        if victim.status == "reserved":  # fulfillment opened shipments for the stock now gone
            why_revoked = f"stock reallocated to priority order {number}"
            result = replace(result, outputs=(revoked(cause, victim.approved, why_revoked), *result.outputs))
        out.victims[k] = result
    return out


def is_short(order: OrderApproved, w: Mapping[str, Stock]) -> bool:
    """Whether the order's stocked lines need more than is free."""
    need: dict[str, int] = {}
    for l in order.lines:
        if not l.make_to_order:
            need[l.sku] = need.get(l.sku, 0) + l.quantity
    return any(n > max(0, w[s].total_available()) for s, n in need.items())
