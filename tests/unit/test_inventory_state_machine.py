"""A hypothesis state machine over inventory's pure decisions (`domain` on `Stock` and `OrderState`): counts,
receipts, purchase orders, approvals (any priority, VIP or not), cancellations, shipments, shortage decisions and
priority approvals and denials, driven the way the handlers drive them, with every step that frees or brings
stock handing it to the waiting orders (`domain.refilled`, as the handlers do in the same unit of work); every
decision must leave the view it was given as it was. The invariants are checked after every step: per SKU and
warehouse, on hand = counted + received - shipped, 0 <= reserved <= on hand, reserved = the sum of the live
reservations; nothing is held or awaited for a cancelled order; exactly the orders awaiting a decision are queued
for one; and no waiting order could be served from what is free."""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts.internal import ApprovedLine, OrderApproved, OrderCancelled, StockShipped
from contracts.public import (
    PriorityApproval,
    PurchaseOrderUpdated,
    ShipmentLine,
    ShortageDecision,
    StockCounted,
    StockReceived,
)
from services.inventory import domain
from services.inventory.stock import Stock
from services.inventory.store import OrderState, View
from tests.examples import examples

SKUS = ("A", "B")
WAREHOUSES = ("E", "W")
PREFS = ("E", "W")
START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
REQUESTED = date(2026, 12, 7)
HOLDS = {*domain.HOLDING, "awaiting_priority_approval"}  # the statuses in which an order may hold stock

lines_st = st.lists(
    st.tuples(st.sampled_from(SKUS), st.integers(1, 10), st.booleans()),
    min_size=1,
    max_size=2,
    unique_by=lambda t: t[0],
)


def number(ref: str) -> str:
    return f"SO-{ref}"


def key(ref: str) -> str:
    return f"web:{ref}"


class InventoryMachine(RuleBasedStateMachine):
    """The model: the stocks and every order's inventory state, as the documents would hold them."""

    def __init__(self) -> None:
        super().__init__()
        self.stocks = {s: Stock(s) for s in SKUS}
        self.orders: dict[str, OrderState] = {}  # ref -> inventory state of the order
        self.counted = {(s, w): 0 for s in SKUS for w in WAREHOUSES}
        self.received = dict.fromkeys(self.counted, 0)
        self.shipped = dict.fromkeys(self.counted, 0)
        self.cancelled: set[str] = set()
        self.steps = 0

    # ---- helpers mirroring the handlers ----
    def now(self) -> datetime:
        self.steps += 1
        return START + timedelta(minutes=self.steps)

    def refs(self, *statuses: str) -> list[str]:
        return sorted(r for r, s in self.orders.items() if s.status in statuses and not s.dispatched)

    def view(self) -> View:
        return View({key(r): s for r, s in self.orders.items()}, dict(self.stocks))

    def snapshot(self) -> str:
        stocks = {s: x.to_doc() for s, x in self.stocks.items()}
        return json.dumps([stocks, {r: s.to_doc() for r, s in self.orders.items()}], sort_keys=True, default=str)

    def pure(self, decide: Callable[[View], domain.Decision]) -> domain.Decision:
        """A decision on the current view, which it must leave as it was."""
        before = self.snapshot()
        d = decide(self.view())
        assert self.snapshot() == before, "a decision changed the state it was given"
        return d

    def settle(self, d: domain.Decision, why: str) -> None:
        """Serve the orders waiting for what the decision freed (the handlers' refill step), keep the result."""
        if d.refill and domain.waiting_for(d):
            served = self.pure(lambda v: domain.refilled(d, v, f"refill-{self.steps}", PREFS, self.now()))
            more = len([k for k in served.new_state.orders if k not in d.new_state.orders])
            event(f"{why} -> refill served {min(more, 2)}{'+' if more > 2 else ''}")
            d = served
        self.stocks.update(d.new_state.stocks)
        for k, state in d.new_state.orders.items():
            assert state is not None
            self.orders[k.split(":", 1)[1]] = state

    def holdings(self, stocks: dict[str, Stock]) -> dict[str, dict[str, int]]:
        """Order number -> reservation id -> units held."""
        out: dict[str, dict[str, int]] = {}
        for stock in stocks.values():
            for r, where in stock.reservations.items():
                out.setdefault(r.rsplit("#", 1)[0], {})[r] = sum(where.values())
        return out

    def command(self, model: Any, ref: str, **fields: Any) -> Any:
        return model(
            version=1,
            command_id=f"cmd-{self.steps}",
            channel="web",
            channel_order_ref=ref,
            issued_by="supervisor-1",
            issued_at=START,
            **fields,
        )

    def movement(self, model: Any, **fields: Any) -> Any:
        return model(version=1, event_id=f"mv-{self.steps}", **fields)

    def order_event(self, model: Any, ref: str, **fields: Any) -> Any:
        ident = {"order_key": key(ref), "order_number": number(ref), "channel": "web", "channel_order_ref": ref}
        return model(event_id=f"ev-{self.steps}", revision=self.orders[ref].revision, **ident, **fields)

    # ---- stock movements ----
    @initialize(levels=st.lists(st.integers(0, 20), min_size=4, max_size=4))
    def opening_count(self, levels: list[int]) -> None:
        for (sku, wh), n in zip(self.counted, levels, strict=True):
            self.count(sku, wh, n)

    @rule(sku=st.sampled_from(SKUS), warehouse=st.sampled_from(WAREHOUSES), on_hand=st.integers(0, 40))
    def count(self, sku: str, warehouse: str, on_hand: int) -> None:
        msg = self.movement(StockCounted, type="stock.counted", sku=sku, warehouse=warehouse, on_hand=on_hand)
        d = self.pure(lambda v: domain.counted(v, msg))
        if on_hand < self.stocks[sku].reserved(warehouse):
            assert d.dead_letter and d.new_state == View() and "resolve the reservations first" in d.dead_letter
            return
        self.counted[(sku, warehouse)] = on_hand
        self.received[(sku, warehouse)] = self.shipped[(sku, warehouse)] = 0
        self.settle(d, "count")

    @rule(
        sku=st.sampled_from(SKUS),
        warehouse=st.sampled_from(WAREHOUSES),
        quantity=st.integers(1, 30),
        po=st.sampled_from([None, "PO-1", "PO-2"]),
    )
    def receive(self, sku: str, warehouse: str, quantity: int, po: str | None) -> None:
        fields = {"sku": sku, "warehouse": warehouse, "quantity": quantity, "po_number": po}
        msg = self.movement(StockReceived, type="stock.received", **fields)
        self.received[(sku, warehouse)] += quantity
        self.settle(self.pure(lambda v: domain.received(v, msg)), "receipt")

    @rule(
        sku=st.sampled_from(SKUS),
        po=st.sampled_from(["PO-1", "PO-2"]),
        quantity=st.integers(0, 20),
        eta_days=st.integers(1, 20),
        status=st.sampled_from(["open", "open", "cancelled"]),
    )
    def purchase_order(self, sku: str, po: str, quantity: int, eta_days: int, status: str) -> None:
        eta = START.date() + timedelta(days=eta_days)
        fields = {"po_number": po, "sku": sku, "warehouse": "E", "quantity": quantity, "eta": eta, "status": status}
        msg = self.movement(PurchaseOrderUpdated, type="purchase-order.updated", **fields)
        self.settle(self.pure(lambda v: domain.purchase_order(v, msg)), "purchase order")

    # ---- orders ----
    def pick_ref(self, data: st.DataObject, amend: bool) -> str:
        """A new order, or (`amend`) a new revision of one still open, if any."""
        open_ = self.refs(*HOLDS, "awaiting_customer_decision")
        if amend and open_:
            return data.draw(st.sampled_from(open_))
        return f"R{len(self.orders)}"

    @rule(
        data=st.data(),
        amend=st.booleans(),
        lines=lines_st,
        priority=st.sampled_from(["normal", "normal", "normal", "urgent"]),
        vip=st.sampled_from([False, False, False, True]),
    )
    def approve(
        self, data: st.DataObject, amend: bool, lines: list[tuple[str, int, bool]], priority: str, vip: bool
    ) -> None:
        self.approve_order(self.pick_ref(data, amend), lines, priority, vip)

    @rule(data=st.data(), sku=st.sampled_from(SKUS), beyond=st.integers(1, 8), urgent=st.booleans())
    def approve_priority_order(self, data: st.DataObject, sku: str, beyond: int, urgent: bool) -> None:
        """An urgent or VIP order for a little more than is free (its own rule, so priority requests come up)."""
        free = max(0, self.stocks[sku].total_available())
        ref = self.pick_ref(data, False)
        self.approve_order(ref, [(sku, free + beyond, False)], "urgent" if urgent else "normal", not urgent)

    def approve_order(self, ref: str, lines: list[tuple[str, int, bool]], priority: str, vip: bool) -> None:
        state = self.orders.get(ref)
        if state is not None and (state.status == "cancelled" or state.dispatched):
            return  # ignored once cancelled; no amendment once shipping started
        revision = (state.revision if state else 0) + 1
        order = OrderApproved(
            event_id=f"approved-{ref}-{revision}",
            order_key=key(ref),
            order_number=number(ref),
            channel="web",
            channel_order_ref=ref,
            revision=revision,
            customer_id="C-1",
            vip=vip,
            priority=priority,
            requested_date=REQUESTED,
            currency="CNY",
            lines=[
                ApprovedLine(
                    line_no=i,
                    sku=sku,
                    quantity=qty,
                    unit_price=Decimal("1.00"),
                    substitutes=[s for s in SKUS if s != sku] if sub else [],
                )
                for i, (sku, qty, sub) in enumerate(lines, start=1)
            ],
            total_amount=Decimal(sum(q for _, q, _ in lines)),
        )
        now = self.now()
        d = self.pure(lambda v: domain.approved(v, order, PREFS, now))  # an amended revision is planned afresh
        new = d.new_state.orders[key(ref)]
        assert new is not None and new.revision == revision
        event(f"approve -> {new.status}")
        self.settle(d, "amendment")

    @precondition(lambda self: self.refs(*HOLDS, "awaiting_customer_decision"))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(self.refs(*HOLDS, "awaiting_customer_decision")))
        self.cancel_order(ref)

    def cancel_order(self, ref: str) -> None:
        msg = self.order_event(OrderCancelled, ref, reason="customer asked", cancelled_by="cs-1")
        self.settle(self.pure(lambda v: domain.cancelled(v, msg)), "cancel")
        assert self.orders[ref].status == "cancelled"
        self.cancelled.add(ref)

    def dispatch(self, ref: str, warehouse: str, lines: list[ShipmentLine]) -> None:
        """A shipment of the order leaves `warehouse` (inventory hears it as `stock.shipped`)."""
        fields = {"shipment_id": f"S-{ref}-{self.steps}-{warehouse}", "warehouse": warehouse, "lines": lines}
        msg = self.order_event(StockShipped, ref, **fields)
        for line in lines:
            self.shipped[(line.sku, warehouse)] += line.quantity
        self.settle(self.pure(lambda v: domain.shipped(v, msg)), "shipment")
        assert self.orders[ref].dispatched

    @precondition(lambda self: self.refs("reserved"))
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        """A reserved order is dispatched: each held quantity leaves on hand where it was reserved."""
        ref = data.draw(st.sampled_from(self.refs("reserved")))
        by_wh: dict[str, list[ShipmentLine]] = {}
        for sku, stock in self.stocks.items():
            for r, where in stock.reservations.items():
                if r.startswith(f"{number(ref)}#"):
                    line_no = int(r.rsplit("#", 1)[1])
                    for wh, q in where.items():
                        by_wh.setdefault(wh, []).append(ShipmentLine(line_no=line_no, sku=sku, quantity=q))
        for wh, lines in sorted(by_wh.items()):
            self.dispatch(ref, wh, lines)

    @precondition(lambda self: self.part_shippers())
    @rule(data=st.data())
    def ship_part(self, data: st.DataObject) -> None:
        """The part of a `ship_partial` order handed to fulfillment is dispatched while its remainder waits."""
        ref = data.draw(st.sampled_from(self.part_shippers()))
        state = self.orders[ref]
        assert state.approved is not None and state.sent is not None
        by_wh: dict[str, list[ShipmentLine]] = {}
        for line in state.approved.lines:
            for wh, q in sorted(state.sent.get(str(line.line_no), {}).items()):
                if q:
                    by_wh.setdefault(wh, []).append(ShipmentLine(line_no=line.line_no, sku=line.sku, quantity=q))
        for wh, lines in sorted(by_wh.items()):
            self.dispatch(ref, wh, lines)
        assert not any(q for w in (self.orders[ref].sent or {}).values() for q in w.values())

    def part_shippers(self) -> list[str]:
        return [r for r, s in self.orders.items() if any(q for w in (s.sent or {}).values() for q in w.values())]

    @precondition(lambda self: self.refs("awaiting_customer_decision"))
    @rule(
        data=st.data(),
        choice=st.sampled_from(["ship_partial", "wait", "substitute", "cancel"]),
        substitute=st.sampled_from(SKUS),
        remainder=st.sampled_from(["cancel", "backorder"]),
    )
    def shortage_decision(self, data: st.DataObject, choice: str, substitute: str, remainder: str) -> None:
        ref = data.draw(st.sampled_from(self.refs("awaiting_customer_decision")))
        cmd = self.command(
            ShortageDecision,
            ref,
            type="order.shortage-decision",
            choice=choice,
            substitute_sku=substitute if choice == "substitute" else None,
            remainder=remainder,
        )
        now = self.now()
        d = self.pure(lambda v: domain.shortage(v, cmd, PREFS, now))
        event(f"shortage {choice} (remainder {remainder}) -> {d.outcome}")
        self.settle(d, f"shortage {choice}")
        if choice == "cancel":
            self.cancel_order(ref)  # the order.cancelled it publishes comes back to inventory

    @precondition(lambda self: self.refs("awaiting_priority_approval"))
    @rule(data=st.data())
    def approve_priority_request(self, data: st.DataObject) -> None:
        self.priority_decision(data.draw(st.sampled_from(self.refs("awaiting_priority_approval"))), True)

    @precondition(lambda self: self.refs("awaiting_priority_approval"))
    @rule(data=st.data())
    def deny_priority_request(self, data: st.DataObject) -> None:
        self.priority_decision(data.draw(st.sampled_from(self.refs("awaiting_priority_approval"))), False)

    def priority_decision(self, ref: str, approved: bool) -> None:
        listed = {t.order_key.split(":", 1)[1] for t in self.orders[ref].reallocation}
        cmd = self.command(PriorityApproval, ref, type="order.priority-approval", approved=approved)
        before = self.holdings(self.stocks)
        d = self.pure(lambda v: domain.priority(v, cmd, PREFS, self.now()))
        victims = {k.split(":", 1)[1] for k in d.new_state.orders} - {ref}
        new = d.new_state.orders[key(ref)]
        assert new is not None
        event(f"priority {'approved' if approved else 'denied'} -> {new.status}, {len(victims)} victim(s)")
        assert approved or not victims
        after = self.holdings(dict(d.new_state.stocks))
        changed = {number(ref), *(number(v) for v in victims)}
        assert {n: h for n, h in before.items() if n not in changed} == {
            n: h for n, h in after.items() if n not in changed
        }, "no other order's stock moves"
        if victims:
            assert new.status == "reserved"
        for v in victims:
            assert sum(after.get(number(v), {}).values()) < sum(before[number(v)].values()), "each victim loses"
            was = self.orders[v].approved
            assert was is not None and was.priority == "normal" and not was.vip, "only normal, non-VIP orders lose"
            assert self.orders[v].status in domain.HOLDING and not self.orders[v].dispatched
            assert v in listed and v != ref
        self.settle(d, f"priority {'approved' if approved else 'denied'}")

    # ---- invariants ----
    @invariant()
    def on_hand_is_counted_plus_received_minus_shipped(self) -> None:
        for (sku, wh), counted in self.counted.items():
            expected = counted + self.received[(sku, wh)] - self.shipped[(sku, wh)]
            assert self.stocks[sku].on_hand.get(wh, 0) == expected, (sku, wh)

    @invariant()
    def reserved_is_the_sum_of_reservations_and_within_on_hand(self) -> None:
        for sku, stock in self.stocks.items():
            for r, where in stock.reservations.items():
                assert where and all(q > 0 for q in where.values()), (sku, r, where)
            for wh in WAREHOUSES:
                total = sum(where.get(wh, 0) for where in stock.reservations.values())
                assert stock.reserved(wh) == total
                assert 0 <= total <= stock.on_hand.get(wh, 0), (sku, wh, total, stock.on_hand)
                if wh in stock.on_hand:
                    assert stock.available(wh) >= 0

    @invariant()
    def nothing_is_held_for_a_cancelled_order(self) -> None:
        for ref in self.cancelled:
            prefix = f"{number(ref)}#"
            for stock in self.stocks.values():
                assert not any(r.startswith(prefix) for r in stock.reservations)
                assert not any(r.startswith(prefix) for r in stock.waiting)
                assert not any(r.startswith(prefix) for po in stock.incoming.values() for r in po.promised)

    @invariant()
    def only_orders_that_may_hold_stock_hold_it(self) -> None:
        for stock in self.stocks.values():
            assert set(stock.owners) <= set(stock.reservations) | set(stock.waiting)
            for r in stock.reservations:
                ref = r.rsplit("#", 1)[0].removeprefix("SO-")
                state = self.orders[ref]
                assert state.status in HOLDS or state.dispatched, (r, state.status)
                assert r in stock.owners and stock.owners[r]["order_key"] == key(ref)

    @invariant()
    def a_part_handed_over_is_held_until_it_ships(self) -> None:
        for ref, state in self.orders.items():
            order = state.approved
            for line_no, where in (state.sent or {}).items():
                assert order is not None and state.status in domain.WAITING, (ref, state.status)
                line = next(l for l in order.lines if str(l.line_no) == line_no)
                held = self.stocks[line.sku].reservations.get(domain.rid(number(ref), line.line_no), {})
                assert all(held.get(wh, 0) >= q for wh, q in where.items()), (ref, where, held)

    @invariant()
    def exactly_the_orders_awaiting_a_decision_are_queued_for_one(self) -> None:
        entries = [(r, sku, w["order_key"]) for sku, st in self.stocks.items() for r, w in st.deciding.items()]
        queued = {r: (sku, k) for r, sku, k in entries}
        assert len(queued) == len(entries), f"an order line is queued under two SKUs: {entries}"
        expected = {}
        for ref, state in self.orders.items():
            if state.status == "awaiting_customer_decision":
                assert state.approved is not None
                for l in state.approved.lines:
                    expected[domain.rid(number(ref), l.line_no)] = (l.sku, key(ref))
        assert queued == expected

    @invariant()
    def no_waiting_order_could_be_served_from_what_is_free(self) -> None:
        for ref, state in self.orders.items():
            if state.status in domain.WAITING:
                for stock in self.stocks.values():
                    for r, w in stock.waiting.items():
                        if r.startswith(f"{number(ref)}#"):
                            assert stock.plan(w["qty"], PREFS) is None, (ref, r, w, stock.on_hand)
            if state.status == "awaiting_customer_decision":
                assert state.approved is not None
                normal = state.approved.model_copy(update={"priority": "normal", "vip": False, "order_key": "trial"})
                tried = domain.approved(View({}, self.stocks), normal, PREFS, START).new_state.orders["trial"]
                assert tried and tried.status != "reserved", f"{ref} awaits a decision although it could be reserved"


TestInventoryMachine = InventoryMachine.TestCase
TestInventoryMachine.settings = settings(
    max_examples=examples(400), stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
