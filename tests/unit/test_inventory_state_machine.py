"""A hypothesis state machine over inventory's pure domain (Stock + domain): counts, receipts, purchase orders,
approvals (any priority, VIP or not), cancellations, shipments, shortage decisions and priority approvals and
denials, driven the way the handlers drive them, with every step that frees or brings stock handing it to the
waiting orders (`domain.refill`, as the handlers do in the same unit of work); the invariants are checked after
every step: per SKU and warehouse, on hand = counted + received - shipped, 0 <= reserved <= on hand, reserved =
the sum of the live reservations; nothing is held or awaited for a cancelled order; exactly the orders awaiting a
decision are queued for one; and no waiting order could be served from what is free."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts.internal import ApprovedLine, OrderApproved, OrderCancelled
from contracts.public import PriorityApproval, ShipmentLine, ShortageDecision
from services.inventory import domain
from services.inventory.stock import PurchaseOrder, Stock

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
        self.orders: dict[str, dict[str, Any]] = {}  # ref -> inventory state of the order
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
        return sorted(r for r, s in self.orders.items() if s.get("status") in statuses and not s.get("dispatched"))

    def kept(self, run: Any) -> domain.Result:
        """Run a domain call; its stock changes stay only if the result keeps them (as the handlers save)."""
        saved = {s: x.copy() for s, x in self.stocks.items()}
        result: domain.Result = run()
        if not result.keep_stock:
            for s, x in self.stocks.items():
                x.restore(saved[s])
        return result

    def refill(self, why: str) -> None:
        """Free stock goes to the waiting orders (the handlers' `_refill` after a release or an arrival)."""
        states: dict[str, dict[str, Any] | None] = {key(r): state for r, state in self.orders.items()}
        served = domain.refill(f"refill-{self.steps}", list(SKUS), self.stocks, states, PREFS, self.now())
        for k, result in served.items():
            assert result.state is not None
            self.orders[k.split(":", 1)[1]] = result.state
        event(f"{why} -> refill served {min(len(served), 2)}{'+' if len(served) > 2 else ''}")

    def holdings(self) -> dict[str, dict[str, int]]:
        """Order number -> reservation id -> units held."""
        out: dict[str, dict[str, int]] = {}
        for stock in self.stocks.values():
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

    # ---- stock movements ----
    @initialize(levels=st.lists(st.integers(0, 20), min_size=4, max_size=4))
    def opening_count(self, levels: list[int]) -> None:
        for (sku, wh), n in zip(self.counted, levels, strict=True):
            self.count(sku, wh, n)

    @rule(sku=st.sampled_from(SKUS), warehouse=st.sampled_from(WAREHOUSES), on_hand=st.integers(0, 40))
    def count(self, sku: str, warehouse: str, on_hand: int) -> None:
        stock = self.stocks[sku]
        if on_hand < stock.reserved(warehouse):
            return  # the handler dead-letters a count below what is reserved
        stock.on_hand[warehouse] = on_hand
        self.counted[(sku, warehouse)] = on_hand
        self.received[(sku, warehouse)] = self.shipped[(sku, warehouse)] = 0
        self.refill("count")

    @rule(
        sku=st.sampled_from(SKUS),
        warehouse=st.sampled_from(WAREHOUSES),
        quantity=st.integers(1, 30),
        po=st.sampled_from([None, "PO-1", "PO-2"]),
    )
    def receive(self, sku: str, warehouse: str, quantity: int, po: str | None) -> None:
        stock = self.stocks[sku]
        stock.on_hand[warehouse] = stock.on_hand.get(warehouse, 0) + quantity
        self.received[(sku, warehouse)] += quantity
        if po and po in stock.incoming:
            stock.incoming[po].quantity = max(0, stock.incoming[po].quantity - quantity)
        self.refill("receipt")

    @rule(
        sku=st.sampled_from(SKUS),
        po=st.sampled_from(["PO-1", "PO-2"]),
        quantity=st.integers(0, 20),
        eta_days=st.integers(1, 20),
        status=st.sampled_from(["open", "open", "cancelled"]),
    )
    def purchase_order(self, sku: str, po: str, quantity: int, eta_days: int, status: str) -> None:
        stock = self.stocks[sku]
        old = stock.incoming.get(po)
        eta = START.date() + timedelta(days=eta_days)
        stock.incoming[po] = PurchaseOrder("E", quantity, eta, status, old.promised if old else {})

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
        state = self.orders.get(ref, {})
        if state.get("status") == "cancelled" or state.get("dispatched"):
            return  # ignored once cancelled; no amendment once shipping started
        revision = state.get("revision", 0) + 1
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
        released = domain.release_all(state, self.stocks)  # an amended revision is planned afresh
        now = self.now()
        result = domain.allocate(order.event_id, order, self.stocks, PREFS, now)
        assert result.state is not None and result.keep_stock
        self.orders[ref] = result.state
        event(f"approve -> {result.outcome}")
        if released:
            self.refill("amendment")

    @precondition(lambda self: self.refs(*HOLDS, "awaiting_customer_decision"))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(self.refs(*HOLDS, "awaiting_customer_decision")))
        state = self.orders[ref]
        domain.release_all(state, self.stocks)
        event = OrderCancelled(
            event_id=f"cancelled-{ref}",
            order_key=key(ref),
            order_number=number(ref),
            channel="web",
            channel_order_ref=ref,
            revision=state["revision"],
            reason="customer asked",
            cancelled_by="cs-1",
        )
        self.orders[ref] = domain.cancelled(state, event)
        self.cancelled.add(ref)
        self.refill("cancel")

    @precondition(lambda self: self.refs("reserved"))
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        """A reserved order is dispatched: each held quantity leaves on hand where it was reserved."""
        ref = data.draw(st.sampled_from(self.refs("reserved")))
        for sku, stock in self.stocks.items():
            for r, where in list(stock.reservations.items()):
                if r.startswith(f"{number(ref)}#"):
                    for wh, q in list(where.items()):
                        stock.consume(r, wh, q)
                        self.shipped[(sku, wh)] += q
        self.orders[ref]["dispatched"] = [f"S-{ref}"]

    @precondition(lambda self: self.part_shippers())
    @rule(data=st.data())
    def ship_part(self, data: st.DataObject) -> None:
        """The part of a `ship_partial` order handed to fulfillment is dispatched while its remainder waits."""
        ref = data.draw(st.sampled_from(self.part_shippers()))
        state = self.orders[ref]
        order = OrderApproved.model_validate(state["approved"])
        for line in order.lines:
            for wh, q in sorted(state["sent"].get(str(line.line_no), {}).items()):
                if q:
                    self.stocks[line.sku].consume(domain.rid(number(ref), line.line_no), wh, q)
                    self.shipped[(line.sku, wh)] += q
                    shipped = [ShipmentLine(line_no=line.line_no, sku=line.sku, quantity=q)]
                    state = domain.shipped_part(state, wh, shipped)
        self.orders[ref] = {**state, "dispatched": [f"S-{ref}"]}

    def part_shippers(self) -> list[str]:
        return [r for r, s in self.orders.items() if any(q for w in s.get("sent", {}).values() for q in w.values())]

    @precondition(lambda self: self.refs("awaiting_customer_decision"))
    @rule(
        data=st.data(),
        choice=st.sampled_from(["ship_partial", "wait", "substitute", "cancel"]),
        substitute=st.sampled_from(SKUS),
        remainder=st.sampled_from(["cancel", "backorder"]),
    )
    def shortage_decision(self, data: st.DataObject, choice: str, substitute: str, remainder: str) -> None:
        ref = data.draw(st.sampled_from(self.refs("awaiting_customer_decision")))
        state = self.orders[ref]
        order = OrderApproved.model_validate(state["approved"])
        cmd = self.command(
            ShortageDecision,
            ref,
            type="order.shortage-decision",
            choice=choice,
            substitute_sku=substitute if choice == "substitute" else None,
            remainder=remainder,
        )
        now = self.now()
        result = self.kept(lambda: domain.decide_shortage(cmd, order, self.stocks, PREFS, now))
        if result.state is not None:
            self.orders[ref] = result.state
        event(f"shortage {choice} (remainder {remainder}) -> {result.outcome}")
        if result.keep_stock:
            self.refill(f"shortage {choice}")
        if choice == "cancel":
            domain.release_all(state, self.stocks)  # the order.cancelled it publishes comes back to inventory
            self.cancelled.add(ref)

    @precondition(lambda self: self.refs("awaiting_priority_approval"))
    @rule(data=st.data())
    def approve_priority_request(self, data: st.DataObject) -> None:
        self.priority_decision(data.draw(st.sampled_from(self.refs("awaiting_priority_approval"))), True)

    @precondition(lambda self: self.refs("awaiting_priority_approval"))
    @rule(data=st.data())
    def deny_priority_request(self, data: st.DataObject) -> None:
        self.priority_decision(data.draw(st.sampled_from(self.refs("awaiting_priority_approval"))), False)

    def priority_decision(self, ref: str, approved: bool) -> None:
        state = self.orders[ref]
        listed = {t["order_key"].split(":", 1)[1] for t in state["reallocation"]}
        victims = {key(v): self.orders.get(v) for v in listed}
        cmd = self.command(PriorityApproval, ref, type="order.priority-approval", approved=approved)
        before = self.holdings()
        out = domain.decide_priority(cmd, state, victims, self.stocks, PREFS, self.now())
        assert out.result.state is not None
        self.orders[ref] = out.result.state
        event(f"priority {'approved' if approved else 'denied'} -> {out.result.outcome}, {len(out.victims)} victim(s)")
        assert approved or not out.victims
        after = self.holdings()
        changed = {number(ref), *(number(k.split(":", 1)[1]) for k in out.victims)}
        assert {n: h for n, h in before.items() if n not in changed} == {
            n: h for n, h in after.items() if n not in changed
        }, "no other order's stock moves"
        if out.victims:
            assert out.result.outcome == "reserved"
        for k, result in out.victims.items():
            v = k.split(":", 1)[1]
            assert sum(after.get(number(v), {}).values()) < sum(before[number(v)].values()), "each victim loses"
            was = OrderApproved.model_validate(self.orders[v]["approved"])
            assert was.priority == "normal" and not was.vip, "only normal, non-VIP orders lose stock"
            assert self.orders[v]["status"] in domain.HOLDING and not self.orders[v].get("dispatched")
            assert v in listed and v != ref
            assert result.state is not None
            self.orders[v] = result.state
        self.refill(f"priority {'approved' if approved else 'denied'}")

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
                assert state["status"] in HOLDS or state.get("dispatched"), (r, state["status"])
                assert stock.owners.get(r, {}).get("order_key") == key(ref)

    @invariant()
    def a_part_handed_over_is_held_until_it_ships(self) -> None:
        for ref, state in self.orders.items():
            order = OrderApproved.model_validate(state["approved"]) if "approved" in state else None
            for line_no, where in state.get("sent", {}).items():
                assert order is not None and state["status"] in domain.WAITING, (ref, state["status"])
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
            if state.get("status") == "awaiting_customer_decision":
                for l in OrderApproved.model_validate(state["approved"]).lines:
                    expected[domain.rid(number(ref), l.line_no)] = (l.sku, key(ref))
        assert queued == expected

    @invariant()
    def no_waiting_order_could_be_served_from_what_is_free(self) -> None:
        for ref, state in self.orders.items():
            if state.get("status") in domain.WAITING:
                for stock in self.stocks.values():
                    for r, w in stock.waiting.items():
                        if r.startswith(f"{number(ref)}#"):
                            assert stock.plan(w["qty"], PREFS) is None, (ref, r, w, stock.on_hand)
            if state.get("status") == "awaiting_customer_decision":
                trial = {s: x.copy() for s, x in self.stocks.items()}
                order = OrderApproved.model_validate(state["approved"])
                tried = domain.allocate("trial", order, trial, PREFS, START, priority=False)
                assert tried.outcome != "reserved", f"{ref} awaits a decision although it could be reserved"


TestInventoryMachine = InventoryMachine.TestCase
TestInventoryMachine.settings = settings(
    max_examples=400, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
