"""Priority allocation (handbook 2.3.3) on the pure domain: ask, approve, deny, victims, refusals."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts import topics
from contracts.internal import ApprovedLine, OrderApproved
from contracts.public import PriorityApproval, ShortageDecision
from services.inventory import domain
from services.inventory.stock import PurchaseOrder, Stock
from services.runtime.messages import Outgoing

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
REQUESTED = date(2026, 12, 7)
PREFS = ("E", "W")


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
    return PriorityApproval(
        type="order.priority-approval",
        version=1,
        command_id=cid,
        channel="web",
        channel_order_ref=ref,
        issued_by="supervisor-1",
        issued_at=NOW,
        approved=approved,
    )


def stocks(**on_hand: dict[str, int]) -> dict[str, Stock]:
    return {sku: Stock(sku, dict(levels)) for sku, levels in on_hand.items()}


def place(o: OrderApproved, st: dict[str, Stock], minutes: int = 0) -> dict[str, Any]:
    """Approve `o` as the handler does (an order left awaiting a decision holds nothing)."""
    result = domain.allocate(o.event_id, o, st, PREFS, NOW + timedelta(minutes=minutes))
    assert result.state is not None
    return result.state


def statuses(outs: list[Outgoing]) -> list[dict[str, Any]]:
    return [json.loads(o.value) for o in outs if o.topic == topics.ORDERS_STATUS]


def held(st: dict[str, Stock], ref: str) -> int:
    return sum(
        q for s in st.values() for r, w in s.reservations.items() if r.startswith(f"SO-{ref}#") for q in w.values()
    )


def check(st: dict[str, Stock]) -> None:
    for s in st.values():
        for w, n in s.on_hand.items():
            assert 0 <= s.reserved(w) <= n


# ---- asking ----
def test_urgent_order_short_of_stock_held_by_normal_orders_asks_for_approval() -> None:
    st = stocks(A={"E": 10})
    n1 = place(order("N1", [("A", 6)]), st)
    assert n1["status"] == "reserved"
    result = domain.allocate("ev-U", order("U", [("A", 8)], priority="urgent"), st, PREFS, NOW)
    assert result.outcome == "awaiting_priority_approval" and result.keep_stock
    [s] = statuses(result.outputs)
    assert s["status"] == "awaiting_priority_approval"
    assert s["details"]["reallocation"] == [{"order_number": "SO-N1", "line_no": 1, "sku": "A", "quantity": 4}]
    assert "priority_reallocation_requested" in [r["code"] for r in s["reasons"]]
    assert held(st, "U") == 4 and held(st, "N1") == 6  # the free part is held; nothing moves before approval
    assert result.state and result.state["reallocation"][0]["order_key"] == "web:N1"
    check(st)


def test_vip_order_asks_too() -> None:
    st = stocks(A={"E": 5})
    place(order("N1", [("A", 5)]), st)
    result = domain.allocate("ev-V", order("V", [("A", 5)], vip=True), st, PREFS, NOW)
    assert result.outcome == "awaiting_priority_approval"


def test_normal_order_gets_the_normal_shortage_path() -> None:
    st = stocks(A={"E": 5})
    place(order("N1", [("A", 5)]), st)
    result = domain.allocate("ev-N2", order("N2", [("A", 5)]), st, PREFS, NOW)
    assert result.outcome == "awaiting_customer_decision"


def test_enough_free_stock_reserves_a_priority_order_without_asking() -> None:
    st = stocks(A={"E": 20})
    place(order("N1", [("A", 5)]), st)
    result = domain.allocate("ev-U", order("U", [("A", 5)], priority="urgent"), st, PREFS, NOW)
    assert result.outcome == "reserved"


def test_urgent_vip_and_dispatched_reservations_are_never_taken() -> None:
    st = stocks(A={"E": 9})
    place(order("U1", [("A", 3)], priority="urgent"), st)
    place(order("V1", [("A", 3)], vip=True), st)
    place(order("N1", [("A", 3)]), st)
    st["A"].consume("SO-N1#1", "E", 1)  # part of N1 dispatched: in fulfillment's hands
    assert not any(st["A"].movable(r) for r in st["A"].reservations)
    result = domain.allocate("ev-U2", order("U2", [("A", 3)], priority="urgent"), st, PREFS, NOW)
    assert result.outcome == "awaiting_customer_decision"  # nothing movable: the normal shortage path


def test_shortage_not_coverable_by_movable_stock_goes_the_normal_way() -> None:
    st = stocks(A={"E": 4})
    place(order("N1", [("A", 4)]), st)
    result = domain.allocate("ev-U", order("U", [("A", 10)], priority="urgent"), st, PREFS, NOW)
    assert result.outcome == "awaiting_customer_decision"


def test_fewest_victims_are_taken() -> None:
    st = stocks(A={"E": 13})
    place(order("N1", [("A", 2)]), st, 1)
    place(order("N2", [("A", 3)]), st, 2)
    place(order("N3", [("A", 8)]), st, 3)
    takes = domain.reallocation(order("U", [("A", 8)], priority="urgent"), st)
    assert takes and [(t["order_number"], t["quantity"]) for t in takes] == [("SO-N3", 8)]
    takes = domain.reallocation(order("U", [("A", 10)], priority="urgent"), st)
    assert takes and [(t["order_number"], t["quantity"]) for t in takes] == [("SO-N3", 8), ("SO-N2", 2)]


def test_the_youngest_reservation_goes_first_among_equals() -> None:
    st = stocks(A={"E": 10})
    place(order("OLD", [("A", 5)]), st, 1)
    place(order("NEW", [("A", 5)]), st, 2)
    takes = domain.reallocation(order("U", [("A", 5)], priority="urgent"), st)
    assert takes and [t["order_number"] for t in takes] == ["SO-NEW"]


def test_make_to_order_lines_are_left_to_production() -> None:
    st = stocks(A={"E": 5})
    place(order("N1", [("A", 5)]), st)
    result = domain.allocate("ev-U", order("U", [("A", 5)], priority="urgent", mto=True), st, PREFS, NOW)
    assert result.outcome == "in_production"


# ---- approving ----
def test_approval_moves_the_stock_and_replans_the_victim_through_the_shortage_path() -> None:
    st = stocks(A={"E": 10}, B={"E": 10})
    n1 = place(order("N1", [("A", 6), ("B", 2)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 8)], priority="urgent"), st, PREFS, NOW).state
    assert u
    out = domain.decide_priority(approval("U"), u, {"web:N1": n1}, st, PREFS, NOW)
    assert out.result.outcome == "reserved" and held(st, "U") == 8
    [s] = statuses(out.result.outputs)
    assert s["status"] == "reserved" and s["decided_by"] == "supervisor-1"
    assert [r["code"] for r in s["reasons"]] == ["priority_reallocation_approved"]
    assert [o.topic for o in out.result.outputs] == [topics.ORDERS_STATUS, topics.INVENTORY_ALLOCATIONS]
    victim = out.victims["web:N1"]
    assert victim.outcome == "awaiting_customer_decision" and victim.state
    [v] = statuses(victim.outputs)
    assert v["channel_order_ref"] == "N1" and v["status"] == "awaiting_customer_decision"
    assert v["reasons"][0]["code"] == "reallocated_to_priority_order"
    assert "SO-U" in v["reasons"][0]["message"] and v["details"]["options"]["ship_partial"] == {"1": 2, "2": 2}
    assert held(st, "N1") == 0  # an order awaiting its customer's decision holds nothing
    check(st)


def test_a_victim_with_stock_coming_in_time_is_backordered() -> None:
    st = stocks(A={"E": 5})
    st["A"].incoming["PO-1"] = PurchaseOrder("E", 10, NOW.date() + timedelta(days=3))
    n1 = place(order("N1", [("A", 5)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 5)], vip=True), st, PREFS, NOW).state
    assert u and u["status"] == "awaiting_priority_approval"  # the PO is the normal path, asked only on denial
    out = domain.decide_priority(approval("U"), u, {"web:N1": n1}, st, PREFS, NOW)
    victim = out.victims["web:N1"]
    assert victim.outcome == "backordered"
    [v] = statuses(victim.outputs)
    assert v["promise_date"] == (NOW.date() + timedelta(days=3)).isoformat()
    assert [r["code"] for r in v["reasons"]] == ["reallocated_to_priority_order"]
    assert st["A"].incoming["PO-1"].promised == {"SO-N1#1": 5}


def test_victims_have_distinct_status_event_ids() -> None:
    st = stocks(A={"E": 6})
    n1, n2 = place(order("N1", [("A", 3)]), st), place(order("N2", [("A", 3)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 6)], priority="urgent"), st, PREFS, NOW).state
    assert u
    out = domain.decide_priority(approval("U"), u, {"web:N1": n1, "web:N2": n2}, st, PREFS, NOW)
    ids = [s["event_id"] for r in [out.result, *out.victims.values()] for s in statuses(r.outputs)]
    assert len(ids) == 3 == len(set(ids))


def test_approval_when_the_listed_victim_has_shipped_meanwhile_goes_the_shortage_way() -> None:
    st = stocks(A={"E": 5})
    n1 = place(order("N1", [("A", 5)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 5)], priority="urgent"), st, PREFS, NOW).state
    assert u
    out = domain.decide_priority(approval("U"), u, {"web:N1": {**n1, "dispatched": ["S-1"]}}, st, PREFS, NOW)
    assert out.result.outcome == "awaiting_customer_decision" and not out.victims
    [s] = statuses(out.result.outputs)
    assert s["reasons"][0]["code"] == "priority_reallocation_unavailable"
    assert held(st, "N1") == 5


def test_approval_only_takes_from_the_orders_it_was_asked_for() -> None:
    st = stocks(A={"E": 5})
    n1 = place(order("N1", [("A", 5)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 5)], priority="urgent"), st, PREFS, NOW).state
    assert u
    domain.release_all(n1, st)
    n2 = place(order("N2", [("A", 5)]), st)  # N1 cancelled, N2 took the stock meanwhile
    out = domain.decide_priority(approval("U"), u, {"web:N1": None}, st, PREFS, NOW)
    assert out.result.outcome == "awaiting_customer_decision" and held(st, "N2") == 5 and n2["status"] == "reserved"


def test_approval_when_the_stock_is_free_by_now_just_reserves() -> None:
    st = stocks(A={"E": 5})
    n1 = place(order("N1", [("A", 5)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 5)], priority="urgent"), st, PREFS, NOW).state
    assert u
    st["A"].on_hand["W"] = 5
    out = domain.decide_priority(approval("U"), u, {"web:N1": n1}, st, PREFS, NOW)
    assert out.result.outcome == "reserved" and not out.victims and held(st, "N1") == 5


def test_denial_sends_the_priority_order_down_the_normal_shortage_path() -> None:
    st = stocks(A={"E": 10})
    n1 = place(order("N1", [("A", 6)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 8)], priority="urgent"), st, PREFS, NOW).state
    assert u and held(st, "U") == 4
    out = domain.decide_priority(approval("U", approved=False), u, {"web:N1": n1}, st, PREFS, NOW)
    assert out.result.outcome == "awaiting_customer_decision" and not out.victims
    [s] = statuses(out.result.outputs)
    assert [r["code"] for r in s["reasons"]] == ["priority_reallocation_denied", "insufficient_stock"]
    assert held(st, "U") == 0 and held(st, "N1") == 6


def test_denial_with_a_purchase_order_in_time_backorders() -> None:
    st = stocks(A={"E": 4})
    st["A"].incoming["PO-1"] = PurchaseOrder("E", 10, NOW.date() + timedelta(days=2))
    n1 = place(order("N1", [("A", 4)]), st)
    u = domain.allocate("ev-U", order("U", [("A", 4)], priority="urgent"), st, PREFS, NOW).state
    assert u
    out = domain.decide_priority(approval("U", approved=False), u, {"web:N1": n1}, st, PREFS, NOW)
    assert out.result.outcome == "backordered" and st["A"].waiting["SO-U#1"]["qty"] == 4


def test_a_command_for_an_order_not_awaiting_approval_is_refused() -> None:
    out = domain.refused(approval("X"), {"status": "reserved", "revision": 1, "order_number": "SO-X"}, NOW)
    s = json.loads(out.value)
    assert s["status"] == "reserved" and s["details"] == {"refused": "order.priority-approval"}
    assert [r["code"] for r in s["reasons"]] == ["no_priority_approval_awaited"]
    assert "not awaiting a priority approval" in s["reasons"][0]["message"]


def test_a_priority_orders_shortage_decision_never_asks_again() -> None:
    st = stocks(A={"E": 5})
    place(order("N1", [("A", 5)]), st)
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
    result = domain.decide_shortage(cmd, order("U", [("A", 5)], priority="urgent"), st, PREFS, NOW)
    assert result.outcome == "backordered"


# ---- stock bookkeeping of owners ----
def test_owners_survive_the_document_form_and_follow_the_reservations() -> None:
    st = stocks(A={"E": 10})
    place(order("N1", [("A", 4)]), st)
    place(order("U", [("A", 4)], priority="urgent"), st)
    again = Stock.from_doc("A", st["A"].to_doc())
    assert again == st["A"] and again.owners["SO-U#1"]["priority"] == "urgent"
    assert again.movable("SO-N1#1") and not again.movable("SO-U#1")
    again.consume("SO-N1#1", "E", 1)
    assert again.owners["SO-N1#1"]["consumed"] and not again.movable("SO-N1#1")
    again.consume("SO-N1#1", "E", 3)
    assert "SO-N1#1" not in again.owners and "SO-N1#1" not in again.reservations
    again.release("SO-U#1")
    assert again.owners == {} and again.reserved("E") == 0 and again.on_hand == {"E": 6}


def test_a_zero_reservation_creates_nothing() -> None:
    st = Stock("A", {"E": 1})
    st.reserve("R#1", {"E": 0}, {"order_key": "k"})
    assert st.reservations == {} and st.owners == {}


def test_old_stock_documents_without_owners_are_read_and_never_reallocated() -> None:
    st = Stock.from_doc("A", {"sku": "A", "on_hand": {"E": 5}, "reservations": {"SO-OLD#1": {"E": 5}}})
    assert st.owners == {} and not st.movable("SO-OLD#1")
    assert domain.reallocation(order("U", [("A", 5)], priority="urgent"), {"A": st}) is None
