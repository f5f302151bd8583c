"""Free stock goes to the waiting orders (`domain.refilled`): backorders oldest promise first, then orders awaiting the
customer's decision if they can now be reserved in full; the `deciding` queue follows the orders' statuses."""

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts.internal import ApprovedLine, OrderApproved, OrderCancelled
from contracts.public import ProductionUpdated, ShortageDecision
from services.inventory import domain
from services.inventory.stock import PurchaseOrder
from services.inventory.store import OrderState
from services.runtime.messages import Outgoing
from tests.unit.inventory_world import PREFS, Inventory

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def order(ref: str, *lines: tuple[str, int], substitutes: list[str] | None = None) -> OrderApproved:
    return OrderApproved(
        event_id=f"approved-{ref}", order_key=f"web:{ref}", order_number=f"SO-{ref}", channel="web",
        channel_order_ref=ref, revision=1, customer_id="C-1", requested_date=date(2026, 12, 7), currency="CNY",
        lines=[
            ApprovedLine(line_no=i, sku=sku, quantity=q, unit_price=Decimal("1.00"), substitutes=substitutes or [])
            for i, (sku, q) in enumerate(lines, start=1)
        ],
        total_amount=Decimal(sum(q for _, q in lines)),
    )  # fmt: skip


class World(Inventory):
    """Inventory driven through its decisions as the handlers drive it, a minute per step."""

    def __init__(self, **on_hand: dict[str, int]) -> None:
        super().__init__(**on_hand)
        self.minute = 0

    def now(self) -> datetime:
        self.minute += 1
        return NOW + timedelta(minutes=self.minute)

    def state(self, o: OrderApproved) -> OrderState:
        return self.order(o.order_key)

    def approve(self, o: OrderApproved) -> str:
        self.apply(domain.approved(self.view(), o, PREFS, self.now()))
        return self.state(o).status

    def cancel(self, o: OrderApproved) -> dict[str, tuple[Outgoing, ...]]:
        """The cancellation handler: release everything, then serve the waiting orders in the same step; the
        events of each order served."""
        ev = OrderCancelled(event_id=f"c-{o.order_key}", **o.identity(), reason="r", cancelled_by="cs")
        d = domain.cancelled(self.view(), ev)
        assert d.refill and d.outcome.startswith("cancelled: released")
        if domain.waiting_for(d):
            d = domain.refilled(d, self.view(), ev.event_id, PREFS, self.now())
        self.apply(d)
        return {k: d.events[k] for k in d.new_state.orders if k != o.order_key}

    def decide(self, cmd: ShortageDecision) -> domain.Decision:
        return self.apply(domain.shortage(self.view(), cmd, PREFS, self.now()))

    def status(self, o: OrderApproved) -> str:
        return self.state(o).status

    def held_by(self, o: OrderApproved) -> int:
        return self.held(o.order_number or "")


def body(out: Outgoing) -> dict[str, Any]:
    return dict(json.loads(out.value))


def statuses(served: dict[str, tuple[Outgoing, ...]]) -> dict[str, list[str]]:
    return {k: [body(o)["status"] for o in outs if o.topic == "orders.status"] for k, outs in served.items()}


def test_released_units_go_to_backorders_oldest_promise_first_skipping_what_does_not_fit() -> None:
    w = World(A={"E": 4, "W": 3})
    w.stocks["A"].incoming["PO-1"] = PurchaseOrder("E", 20, date(2026, 12, 1))
    first, old, young, younger = (
        order("R1", ("A", 7)),
        order("B1", ("A", 9)),
        order("B2", ("A", 5)),
        order("B3", ("A", 2)),
    )
    assert [w.approve(o) for o in (first, old, young, younger)] == ["reserved", *["backordered"] * 3]
    served = w.cancel(first)  # 7 free: B1 needs 9 (skipped), B2 takes 5, B3 takes 2
    assert statuses(served) == {"web:B2": ["reserved"], "web:B3": ["reserved"]}
    assert w.status(old) == "backordered" and (w.held_by(young), w.held_by(younger)) == (5, 2)
    assert w.stocks["A"].reservations["SO-B2#1"] == {"E": 4, "W": 1}  # one warehouse first, else split
    assert set(w.stocks["A"].incoming["PO-1"].promised) == {"SO-B1#1"}  # the promises kept are free again
    assert [body(o)["type"] for o in served["web:B2"]] == ["order.status", "allocation.reserved"]


def test_an_order_waiting_on_two_skus_is_reserved_only_when_both_are_covered() -> None:
    w = World(A={"E": 2}, B={"E": 1})
    w.stocks["A"].incoming["PO-A"] = PurchaseOrder("E", 10, date(2026, 12, 1))
    w.stocks["B"].incoming["PO-B"] = PurchaseOrder("E", 10, date(2026, 12, 1))
    holder_a, holder_b, both = order("HA", ("A", 2)), order("HB", ("B", 1)), order("AB", ("A", 2), ("B", 1))
    assert [w.approve(o) for o in (holder_a, holder_b, both)] == ["reserved", "reserved", "backordered"]
    served = w.cancel(holder_a)
    assert statuses(served) == {"web:AB": []}  # line A covered, line B still waits: no status yet
    assert w.state(both).lines["1"].state == "reserved"
    served = w.cancel(holder_b)
    assert statuses(served) == {"web:AB": ["reserved"]} and w.held_by(both) == 3


def test_orders_awaiting_a_decision_are_reserved_oldest_first_when_now_fully_coverable() -> None:
    w = World(A={"E": 5})
    holder, big, small, tiny = order("H", ("A", 5)), order("D1", ("A", 9)), order("D2", ("A", 4)), order("D3", ("A", 2))
    assert [w.approve(o) for o in (holder, big, small, tiny)] == ["reserved", *["awaiting_customer_decision"] * 3]
    served = w.cancel(holder)
    assert statuses(served) == {"web:D2": ["reserved"]}  # D1 is still short; after D2 only 1 is left for D3
    [why] = body(served["web:D2"][0])["reasons"]
    assert why["code"] == "stock_available"
    assert w.status(big) == w.status(tiny) == "awaiting_customer_decision" and w.held_by(tiny) == 0
    assert sorted(w.stocks["A"].deciding) == ["SO-D1#1", "SO-D3#1"]


def test_an_order_awaiting_a_decision_is_not_backordered_behind_the_customers_back() -> None:
    w = World(A={"E": 3})
    holder, waiting = order("H", ("A", 3)), order("D", ("A", 5))
    assert [w.approve(o) for o in (holder, waiting)] == ["reserved", "awaiting_customer_decision"]
    w.stocks["A"].incoming["PO-1"] = PurchaseOrder("E", 10, date(2026, 12, 1))  # in time, arrives meanwhile
    assert w.cancel(holder) == {}  # 3 free, 2 in transit: it could be backordered, but the customer decides
    assert w.status(waiting) == "awaiting_customer_decision" and not w.stocks["A"].incoming["PO-1"].promised
    assert w.stocks["A"].available("E") == 3


def test_entries_of_orders_no_longer_awaiting_are_dropped() -> None:
    w = World(A={"E": 2})
    holder, gone = order("H", ("A", 2)), order("G", ("A", 1))
    assert [w.approve(o) for o in (holder, gone)] == ["reserved", "awaiting_customer_decision"]
    w.orders[gone.order_key] = replace(w.state(gone), status="cancelled")  # its release is pending
    assert w.cancel(holder) == {}
    assert w.stocks["A"].deciding == {} and w.stocks["A"].available("E") == 2


def test_a_substitute_that_is_short_too_queues_the_order_under_the_substitute_only() -> None:
    w = World(A={"E": 1}, B={"E": 1})
    o = order("S", ("A", 3), substitutes=["B"])
    assert w.approve(o) == "awaiting_customer_decision"
    since = w.stocks["A"].deciding["SO-S#1"]["since"]
    cmd = ShortageDecision(
        type="order.shortage-decision", version=1, command_id="cmd-s", channel="web", channel_order_ref="S",
        issued_by="cust", issued_at=NOW, choice="substitute", substitute_sku="B",
    )  # fmt: skip
    assert w.decide(cmd).outcome == "substitute: awaiting_customer_decision" == f"substitute: {w.status(o)}"
    assert w.stocks["A"].deciding == {} and w.stocks["B"].deciding["SO-S#1"]["since"] == since  # same place


def test_every_other_outcome_takes_the_order_off_the_queue() -> None:
    w = World(A={"E": 1})
    o = order("P", ("A", 3))
    assert w.approve(o) == "awaiting_customer_decision"
    cmd = ShortageDecision(
        type="order.shortage-decision", version=1, command_id="cmd-p", channel="web", channel_order_ref="P",
        issued_by="cust", issued_at=NOW, choice="ship_partial",
    )  # fmt: skip
    assert w.decide(cmd).outcome == "ship_partial: partial reserved" and w.status(o) == "reserved"
    assert w.stocks["A"].deciding == {} and w.stocks["A"].reservations == {"SO-P#1": {"E": 1}}


def test_finished_production_goes_first_to_the_order_that_asked_for_it() -> None:
    w = World(A={"E": 0})
    made = [l.model_copy(update={"make_to_order": True}) for l in order("M1", ("A", 3)).lines]
    older, younger = (order(ref, ("A", 3)).model_copy(update={"lines": made}) for ref in ("M1", "M2"))
    assert [w.approve(o) for o in (older, younger)] == ["in_production", "in_production"]
    done = ProductionUpdated(
        type="production.updated", version=1, event_id="p-1", production_request_id="PR-SO-M2-1", sku="A",
        quantity=3, expected_completion=date(2026, 12, 1), status="done",
    )  # fmt: skip
    before = json.dumps(w.stocks["A"].to_doc(), default=str)
    d = domain.production(w.view(), done, PREFS)
    assert json.dumps(w.stocks["A"].to_doc(), default=str) == before  # the stock it was given stays as it was
    assert d.refill and d.new_state.stocks["A"].on_hand == {"E": 3}
    served = domain.refilled(d, w.view(), "p-1", PREFS, w.now())
    w.apply(served)
    assert (w.status(older), w.status(younger)) == ("in_production", "reserved") and w.held_by(younger) == 3
