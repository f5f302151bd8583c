"""Priority allocation (handbook 2.3.3) on the pure domain: ask, approve, deny, victims, refusals."""

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts import topics
from contracts.internal import ApprovedLine, OrderApproved
from contracts.public import PriorityApproval, ShortageDecision
from services.inventory import domain
from services.inventory.stock import Owner, PurchaseOrder, Stock, empty_hold
from services.inventory.store import OrderState, View
from services.runtime.messages import Outgoing
from tests.factories import command
from tests.unit.inventory_world import PREFS, Inventory

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
REQUESTED = date(2026, 12, 7)


def order(
    ref: str,
    lines: list[tuple[str, int]],
    *,
    priority: str = "normal",
    vip: bool = False,
    mto: bool = False,
) -> OrderApproved:
    return OrderApproved(
        event_id=f"approved-{ref}",
        order_key=f"web:{ref}",
        order_number=f"SO-{ref}",
        channel="web",
        channel_order_ref=ref,
        revision=1,
        customer_id="C-1",
        vip=vip,
        priority=priority,
        requested_date=REQUESTED,
        currency="CNY",
        lines=[
            ApprovedLine(line_no=i, sku=s, quantity=q, unit_price=Decimal("1.00"), make_to_order=mto)
            for i, (s, q) in enumerate(lines, start=1)
        ],
        total_amount=Decimal(sum(q for _, q in lines)),
    )


def approval(ref: str, cid: str = "cmd-1", approved: bool = True) -> PriorityApproval:
    return PriorityApproval.model_validate(command("order.priority-approval", ref, cid, approved=approved))


class Shop(Inventory):
    """Inventory moved on by its decisions, without the refill step (test_inventory_refill covers it)."""

    def place(self, o: OrderApproved, minutes: int = 0) -> OrderState:
        """Approve `o` (an order left awaiting a decision holds nothing); its new state."""
        self.apply(domain.approved(self.view(), o, PREFS, NOW + timedelta(minutes=minutes)))
        return self.order(o.order_key)

    def priority(self, cmd: PriorityApproval) -> domain.Decision:
        return self.apply(domain.priority(self.view(), cmd, PREFS, NOW))

    def check(self) -> None:
        for s in self.stocks.values():
            for w, n in s.on_hand.items():
                assert 0 <= s.reserved(w) <= n


def statuses(outs: Sequence[Outgoing]) -> list[dict[str, Any]]:
    return [json.loads(o.value) for o in outs if o.topic == topics.ORDERS_STATUS]


# ---- asking ----
def test_urgent_order_short_of_stock_held_by_normal_orders_asks_for_approval() -> None:
    shop = Shop(A={"E": 10})
    assert shop.place(order("N1", [("A", 6)])).status == "reserved"
    before = shop.view()
    d = shop.apply(domain.approved(before, order("U", [("A", 8)], priority="urgent"), PREFS, NOW))
    assert shop.order("web:U").status == "awaiting_priority_approval"
    [s] = statuses(d.events["web:U"])
    assert s["status"] == "awaiting_priority_approval"
    assert s["details"]["reallocation"] == [{"order_number": "SO-N1", "line_no": 1, "sku": "A", "quantity": 4}]
    assert "priority_reallocation_requested" in [r["code"] for r in s["reasons"]]
    assert shop.held("SO-U") == 4 and shop.held("SO-N1") == 6  # the free part is held; nothing moves before approval
    assert shop.order("web:U").reallocation[0].order_key == "web:N1"
    assert before.stocks["A"].reserved("E") == 6  # the decision left the stock it was given as it was
    shop.check()


def test_vip_order_asks_too() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    assert shop.place(order("V", [("A", 5)], vip=True)).status == "awaiting_priority_approval"


def test_normal_order_gets_the_normal_shortage_path() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    assert shop.place(order("N2", [("A", 5)])).status == "awaiting_customer_decision"


def test_enough_free_stock_reserves_a_priority_order_without_asking() -> None:
    shop = Shop(A={"E": 20})
    shop.place(order("N1", [("A", 5)]))
    assert shop.place(order("U", [("A", 5)], priority="urgent")).status == "reserved"


def test_urgent_vip_and_dispatched_reservations_are_never_taken() -> None:
    shop = Shop(A={"E": 9})
    shop.place(order("U1", [("A", 3)], priority="urgent"))
    shop.place(order("V1", [("A", 3)], vip=True))
    shop.place(order("N1", [("A", 3)]))
    shop.stocks["A"].consume("SO-N1#1", "E", 1)  # part of N1 dispatched: in fulfillment's hands
    assert not any(shop.stocks["A"].movable(r) for r in shop.stocks["A"].reservations)
    u2 = shop.place(order("U2", [("A", 3)], priority="urgent"))
    assert u2.status == "awaiting_customer_decision"  # nothing movable: the normal shortage path


def test_shortage_not_coverable_by_movable_stock_goes_the_normal_way() -> None:
    shop = Shop(A={"E": 4})
    shop.place(order("N1", [("A", 4)]))
    assert shop.place(order("U", [("A", 10)], priority="urgent")).status == "awaiting_customer_decision"


def test_fewest_victims_are_taken() -> None:
    shop = Shop(A={"E": 13})
    shop.place(order("N1", [("A", 2)]), 1)
    shop.place(order("N2", [("A", 3)]), 2)
    shop.place(order("N3", [("A", 8)]), 3)
    takes = domain.reallocation(order("U", [("A", 8)], priority="urgent"), shop.stocks)
    assert takes and [(t.order_number, t.quantity) for t in takes] == [("SO-N3", 8)]
    takes = domain.reallocation(order("U", [("A", 10)], priority="urgent"), shop.stocks)
    assert takes and [(t.order_number, t.quantity) for t in takes] == [("SO-N3", 8), ("SO-N2", 2)]


def test_the_youngest_reservation_goes_first_among_equals() -> None:
    shop = Shop(A={"E": 10})
    shop.place(order("OLD", [("A", 5)]), 1)
    shop.place(order("NEW", [("A", 5)]), 2)
    takes = domain.reallocation(order("U", [("A", 5)], priority="urgent"), shop.stocks)
    assert takes and [t.order_number for t in takes] == ["SO-NEW"]


def test_make_to_order_lines_are_left_to_production() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    assert shop.place(order("U", [("A", 5)], priority="urgent", mto=True)).status == "in_production"


# ---- approving ----
def test_approval_moves_the_stock_and_replans_the_victim_through_the_shortage_path() -> None:
    shop = Shop(A={"E": 10}, B={"E": 10})
    shop.place(order("N1", [("A", 6), ("B", 2)]))
    shop.place(order("U", [("A", 8)], priority="urgent"))
    d = shop.priority(approval("U"))
    assert shop.order("web:U").status == "reserved" and shop.held("SO-U") == 8
    [s] = statuses(d.events["web:U"])
    assert s["status"] == "reserved" and s["decided_by"] == "supervisor-1"
    assert [r["code"] for r in s["reasons"]] == ["priority_reallocation_approved"]
    assert [o.topic for o in d.events["web:U"]] == [topics.ORDERS_STATUS, topics.INVENTORY_ALLOCATIONS]
    assert shop.order("web:N1").status == "awaiting_customer_decision"
    [v] = statuses(d.events["web:N1"])
    assert v["channel_order_ref"] == "N1" and v["status"] == "awaiting_customer_decision"
    assert v["reasons"][0]["code"] == "reallocated_to_priority_order"
    assert "SO-U" in v["reasons"][0]["message"] and v["details"]["options"]["ship_partial"] == {"1": 2, "2": 2}
    assert shop.held("SO-N1") == 0  # an order awaiting its customer's decision holds nothing
    assert d.refill and d.outcome == "priority approved: reserved; 1 order(s) re-planned"
    shop.check()


def test_a_victim_with_stock_coming_in_time_is_backordered() -> None:
    shop = Shop(A={"E": 5})
    shop.stocks["A"].incoming["PO-1"] = PurchaseOrder("E", 10, NOW.date() + timedelta(days=3))
    shop.place(order("N1", [("A", 5)]))
    u = shop.place(order("U", [("A", 5)], vip=True))
    assert u.status == "awaiting_priority_approval"  # the PO is the normal path, asked only on denial
    d = shop.priority(approval("U"))
    assert shop.order("web:N1").status == "backordered"
    [v] = statuses(d.events["web:N1"])
    assert v["promise_date"] == (NOW.date() + timedelta(days=3)).isoformat()
    assert [r["code"] for r in v["reasons"]] == ["reallocated_to_priority_order"]
    assert shop.stocks["A"].incoming["PO-1"].promised == {"SO-N1#1": 5}


def test_victims_have_distinct_status_event_ids() -> None:
    shop = Shop(A={"E": 6})
    shop.place(order("N1", [("A", 3)]))
    shop.place(order("N2", [("A", 3)]))
    shop.place(order("U", [("A", 6)], priority="urgent"))
    d = shop.priority(approval("U"))
    ids = [s["event_id"] for outs in d.events.values() for s in statuses(outs)]
    assert len(ids) == 3 == len(set(ids))


def test_approval_when_the_listed_victim_has_shipped_meanwhile_goes_the_shortage_way() -> None:
    shop = Shop(A={"E": 5})
    n1 = shop.place(order("N1", [("A", 5)]))
    shop.place(order("U", [("A", 5)], priority="urgent"))
    shop.orders["web:N1"] = replace(n1, dispatched=("S-1",))
    d = shop.priority(approval("U"))
    assert shop.order("web:U").status == "awaiting_customer_decision" and set(d.events) == {"web:U"}
    [s] = statuses(d.events["web:U"])
    assert s["reasons"][0]["code"] == "priority_reallocation_unavailable"
    assert shop.held("SO-N1") == 5


def test_approval_only_takes_from_the_orders_it_was_asked_for() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    shop.place(order("U", [("A", 5)], priority="urgent"))
    shop.stocks["A"].release("SO-N1#1")
    del shop.orders["web:N1"]
    n2 = shop.place(order("N2", [("A", 5)]))  # N1 gone, N2 took the stock meanwhile
    shop.priority(approval("U"))
    assert shop.order("web:U").status == "awaiting_customer_decision"
    assert shop.held("SO-N2") == 5 and n2.status == "reserved"


def test_approval_when_the_stock_is_free_by_now_just_reserves() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    shop.place(order("U", [("A", 5)], priority="urgent"))
    shop.stocks["A"].on_hand["W"] = 5
    d = shop.priority(approval("U"))
    assert shop.order("web:U").status == "reserved" and set(d.events) == {"web:U"} and shop.held("SO-N1") == 5


def test_denial_sends_the_priority_order_down_the_normal_shortage_path() -> None:
    shop = Shop(A={"E": 10})
    shop.place(order("N1", [("A", 6)]))
    shop.place(order("U", [("A", 8)], priority="urgent"))
    assert shop.held("SO-U") == 4
    d = shop.priority(approval("U", approved=False))
    assert shop.order("web:U").status == "awaiting_customer_decision" and set(d.events) == {"web:U"}
    [s] = statuses(d.events["web:U"])
    assert [r["code"] for r in s["reasons"]] == ["priority_reallocation_denied", "insufficient_stock"]
    assert shop.held("SO-U") == 0 and shop.held("SO-N1") == 6


def test_denial_with_a_purchase_order_in_time_backorders() -> None:
    shop = Shop(A={"E": 4})
    shop.stocks["A"].incoming["PO-1"] = PurchaseOrder("E", 10, NOW.date() + timedelta(days=2))
    shop.place(order("N1", [("A", 4)]))
    shop.place(order("U", [("A", 4)], priority="urgent"))
    shop.priority(approval("U", approved=False))
    assert shop.order("web:U").status == "backordered" and shop.stocks["A"].waiting["SO-U#1"]["qty"] == 4


def test_a_command_for_an_order_not_awaiting_approval_is_refused() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("X", [("A", 1)]))
    d = shop.priority(approval("X"))
    [s] = statuses(d.events["web:X"])
    assert s["status"] == "reserved" and s["details"] == {"refused": "order.priority-approval"}
    assert [r["code"] for r in s["reasons"]] == ["no_priority_approval_awaited"]
    assert "not awaiting a priority approval" in s["reasons"][0]["message"]
    assert d.new_state.orders == {"web:X": shop.order("web:X")} and not d.new_state.stocks and not d.refill


def test_a_command_for_an_unknown_order_is_refused_and_records_nothing() -> None:
    shop = Shop(A={"E": 5})
    d = shop.priority(approval("NOPE"))
    assert d.new_state == View() and not d.events and not d.refill
    [s] = statuses(d.loose)
    assert s["status"] == "invalid" and s["details"] == {"refused": "order.priority-approval"}
    assert [r["code"] for r in s["reasons"]] == ["unknown_order"] and "web:NOPE" in s["reasons"][0]["message"]
    assert s["order_number"] is None and s["revision"] is None and s["decided_by"] == "supervisor-1"


def test_a_priority_orders_shortage_decision_never_asks_again() -> None:
    shop = Shop(A={"E": 5})
    shop.place(order("N1", [("A", 5)]))
    shop.place(order("U", [("A", 5)], priority="urgent"))
    shop.priority(approval("U", approved=False))
    assert shop.order("web:U").status == "awaiting_customer_decision"
    cmd = ShortageDecision(
        type="order.shortage-decision",
        version=1,
        command_id="c-wait",
        channel="web",
        channel_order_ref="U",
        issued_by="cust",
        issued_at=NOW,
        choice="wait",
    )
    shop.apply(domain.shortage(shop.view(), cmd, PREFS, NOW))
    assert shop.order("web:U").status == "backordered"


# ---- stock bookkeeping of owners ----
def test_owners_leave_the_stock_document_with_their_orders_holds_and_come_back_when_attached() -> None:
    shop = Shop(A={"E": 10})
    shop.place(order("N1", [("A", 4)]))
    shop.place(order("U", [("A", 4)], priority="urgent"))
    st = shop.stocks["A"]
    tracked = st.copy()
    tracked.attached = {"web:N1": empty_hold(), "web:U": empty_hold()}
    holds = tracked.current_holds()  # what each order document gets
    doc = st.to_doc()
    assert "reservations" not in doc and "owners" not in doc and doc["reserved"] == {"E": 8}
    again = Stock.from_doc("A", doc)
    assert again.reservations == {} and again.reserved("E") == 8 and again.available("E") == 2
    again.attach("web:N1", holds["web:N1"])
    again.attach("web:U", holds["web:U"])
    assert again.reservations == st.reservations and again.owners == st.owners and again.reserved("E") == 8
    assert again.owners["SO-U#1"]["priority"] == "urgent" and again.changed_holds() == {}
    assert again.movable("SO-N1#1") and not again.movable("SO-U#1")
    again.consume("SO-N1#1", "E", 1)
    assert again.owners["SO-N1#1"].get("consumed") and not again.movable("SO-N1#1")
    again.consume("SO-N1#1", "E", 3)
    assert "SO-N1#1" not in again.owners and "SO-N1#1" not in again.reservations
    again.release("SO-U#1")
    assert again.owners == {} and again.reserved("E") == 0 and again.on_hand == {"E": 6}


def test_a_zero_reservation_creates_nothing() -> None:
    st = Stock("A", {"E": 1})
    st.reserve("R#1", {"E": 0}, Owner(order_key="k", priority="normal", vip=False, since="0"))
    assert st.reservations == {} and st.owners == {}


def test_old_stock_documents_without_owners_are_read_and_never_reallocated() -> None:
    st = Stock.from_doc("A", {"sku": "A", "on_hand": {"E": 5}, "reservations": {"SO-OLD#1": {"E": 5}}})
    assert st.owners == {} and not st.movable("SO-OLD#1")
    assert domain.reallocation(order("U", [("A", 5)], priority="urgent"), {"A": st}) is None
