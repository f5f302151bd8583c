"""The invariant checker catches what it should (synthetic messages; no servers needed)."""

from typing import Any

import pytest

from tests.chaos import invariants as inv
from tests.chaos.workload import Planned

pytestmark = pytest.mark.chaos

KEY = "web:R-1"


def st(status: str, eid: str, rev: int = 1, number: str | None = "SO-1", **details: Any) -> dict[str, Any]:
    return {"event_id": eid, "status": status, "revision": rev, "order_number": number, "details": details}


def plan(kind: str = "normal", key: str = KEY, customer: str = "C-1") -> Planned:
    return Planned(key, kind, customer, (("SKU-0001", 2),), 2 if kind == "incomplete" else 1)


ALLOC = {"allocations": [{"warehouse": "WH-EAST", "lines": [{"line_no": 1, "sku": "SKU-0001", "quantity": 2}]}]}
HAPPY = [st("received", "a"), st("approved", "b", total_amount="20.00"), st("reserved", "c", **ALLOC)]


def test_a_clean_order_passes_every_check() -> None:
    statuses = {KEY: HAPPY}
    plans = {KEY: plan()}
    assert inv.state_machine(statuses) == ([], {})
    assert inv.one_event_per_transition(statuses) == []
    assert inv.numbering(plans, statuses) == []
    assert inv.held_until_corrected(plans, statuses) == []
    assert inv.settled(plans, statuses) == []
    levels = [{"sku": "SKU-0001", "warehouse": "WH-EAST", "on_hand": 10, "reserved": 2}]
    assert inv.reservations(levels, plans, statuses) == []
    assert inv.stock(levels, {("SKU-0001", "WH-EAST"): 10}, {}) == []
    docs = [{"_id": "credit:C-1", "total": 2000, "orders": {"SO-1": 2000}}]
    assert inv.exposure(docs, inv.open_exposure(plans, statuses)) == []


def test_redelivery_is_counted_but_two_event_ids_for_one_step_are_not_allowed() -> None:
    redelivered = {KEY: [*HAPPY, HAPPY[-1]]}
    assert inv.one_event_per_transition(redelivered) == []
    assert inv.redeliveries(redelivered) == [(KEY, "reserved", "c", 2)]
    twice = {KEY: [*HAPPY, st("reserved", "d", **ALLOC)]}
    assert inv.one_event_per_transition(twice)
    assert inv.state_machine(twice)[0]  # reserved -> reserved is no transition either


def test_invalid_paths_and_shipping_after_cancel_are_caught() -> None:
    assert inv.state_machine({KEY: [st("received", "a"), st("reserved", "c")]})[0]
    assert inv.state_machine({KEY: [st("approved", "b")]})[0]
    late = [st("received", "a"), st("cancelled", "x"), st("approved", "b"), st("reserved", "c")]
    assert inv.state_machine({KEY: late}) == ([], {"approved": 1, "reserved": 1})
    assert inv.state_machine({KEY: [*late, st("shipped", "s")]})[0]
    assert inv.state_machine({KEY: [*late, st("cancelled", "y")]})[0]


def test_refusals_and_ignored_messages_do_not_count_as_steps() -> None:
    msgs = [*HAPPY, st("reserved", "r", refused="order.cancel"), st("received", "i", ignored=True)]
    assert inv.state_machine({KEY: msgs}) == ([], {})
    assert inv.one_event_per_transition({KEY: msgs}) == []


def test_numbering_catches_lost_and_double_numbered_orders() -> None:
    plans = {KEY: plan(), "web:R-2": plan(key="web:R-2")}
    assert any("never received" in v for v in inv.numbering(plans, {KEY: HAPPY}))
    two = {KEY: HAPPY, "web:R-2": [st("received", "z", number="SO-1")]}
    assert any("also given" in v for v in inv.numbering(plans, two))
    renumbered = {KEY: [*HAPPY, st("received", "q", rev=2, number="SO-9")]}
    assert inv.numbering({KEY: plan()}, renumbered)


def test_an_incomplete_order_must_be_held_until_corrected() -> None:
    held = [st("needs_clarification", "h", number=None), *(m | {"revision": 2} for m in HAPPY)]
    assert inv.held_until_corrected({KEY: plan("incomplete")}, {KEY: held}) == []
    assert inv.state_machine({KEY: held}) == ([], {})
    leaked = [st("needs_clarification", "h", number=None), *HAPPY]  # revision 1 went on
    assert inv.held_until_corrected({KEY: plan("incomplete")}, {KEY: leaked})


def test_oversell_lost_stock_and_leaked_reservations_are_caught() -> None:
    initial = {("SKU-0001", "WH-EAST"): 10}
    assert inv.stock([{"sku": "SKU-0001", "warehouse": "WH-EAST", "on_hand": 10, "reserved": 11}], initial, {})
    assert inv.stock([{"sku": "SKU-0001", "warehouse": "WH-EAST", "on_hand": 9, "reserved": 0}], initial, {})
    cancelled = {KEY: [*HAPPY, st("cancelled", "x")]}
    leak = [{"sku": "SKU-0001", "warehouse": "WH-EAST", "on_hand": 10, "reserved": 2}]
    assert inv.reservations(leak, {KEY: plan("cancel")}, cancelled)


def test_exposure_must_match_the_open_approved_orders() -> None:
    plans = {KEY: plan()}
    open_ = inv.open_exposure(plans, {KEY: HAPPY})
    assert open_ == {"C-1": {"SO-1": 2000}}
    assert inv.exposure([{"_id": "credit:C-1", "total": 2500, "orders": {"SO-1": 2000}}], open_)
    assert inv.exposure([{"_id": "credit:C-1", "total": 0, "orders": {}}], open_)
    after_cancel = inv.open_exposure(plans, {KEY: [*HAPPY, st("cancelled", "x")]})
    assert inv.exposure([{"_id": "credit:C-1", "total": 2000, "orders": {"SO-1": 2000}}], after_cancel)


def test_the_dead_letter_topic_must_hold_exactly_the_poison() -> None:
    poison = [b"junk tag #1", b"junk tag #2"]

    def letter(eid: str, payload: str, offset: int, service: str = "intake") -> dict[str, Any]:
        return {
            "event_id": eid,
            "service": service,
            "topic": "orders.submitted",
            "partition": 0,
            "offset": offset,
            "payload": payload,
            "reason": "not JSON",
        }

    good = [letter("1", "junk tag #1", 1), letter("2", "junk tag #2", 2)]
    assert inv.dead_letters(good, poison, 2) == ([], 0)
    assert inv.dead_letters([*good, good[0]], poison, 2) == ([], 1)  # redelivered: same event id
    assert inv.dead_letters(good[:1], poison, 2)[0]
    assert inv.dead_letters([*good, letter("3", "an order", 3)], poison, 2)[0]
    assert inv.dead_letters([good[0], letter("2", "junk tag #2", 2, "review")], poison, 2)[0]


def test_a_cancelled_order_whose_last_word_is_a_late_status_is_reported() -> None:
    late = [st("received", "a"), st("cancelled", "x"), st("approved", "b")]
    assert inv.cancelled_not_last({KEY: late}) == [f"{KEY}: received -> cancelled -> approved"]
    assert inv.cancelled_not_last({KEY: late[:2]}) == []


def test_shipments_follow_the_allocation_once_and_are_voided_on_cancel() -> None:
    def opened(sid: str, eid: str, qty: int = 2) -> dict[str, Any]:
        lines = [{"line_no": 1, "sku": "SKU-0001", "quantity": qty}]
        return {"type": "shipment.opened", "event_id": eid, "shipment_id": sid, "order_number": "SO-1"} | {
            "warehouse": "WH-EAST",
            "lines": lines,
        }

    one = [opened("SO-1-WH-EAST-1", "o1")]
    assert inv.shipments({KEY: HAPPY}, one) == ([], 0)
    assert inv.shipments({KEY: HAPPY}, [*one, one[0]]) == ([], 1)  # redelivered
    assert inv.shipments({KEY: HAPPY}, [*one, opened("SO-1-WH-EAST-2", "o2")])[0]  # shipped twice
    assert inv.shipments({KEY: HAPPY}, [opened("SO-1-WH-EAST-1", "o1", 3)])[0]  # wrong quantity
    assert inv.shipments({KEY: HAPPY}, [])[0]  # never opened
    cancelled = {KEY: [*HAPPY, st("cancelled", "x")]}
    assert inv.shipments(cancelled, one)[0]
    voided = {"type": "shipment.voided", "event_id": "v1", "shipment_id": "SO-1-WH-EAST-1", "order_number": "SO-1"}
    assert inv.shipments(cancelled, [*one, voided]) == ([], 0)


def test_a_restated_cancellation_is_not_a_second_transition_and_ends_the_order() -> None:
    late = [
        st("received", "a"),
        st("cancelled", "x"),
        st("approved", "b"),
        st("cancelled", "r", restated_after="approved"),
    ]
    assert inv.cancelled_not_last({KEY: late}) == []
    assert inv.state_machine({KEY: late})[0] == []
    assert inv.one_event_per_transition({KEY: late}) == []


def letter(reason: str, payload: str, service: str = "inventory", offset: int = 7) -> dict[str, Any]:
    return {
        "event_id": f"dlq-{offset}",
        "reason": reason,
        "service": service,
        "topic": "orderflow.orders.approved",
        "partition": 0,
        "offset": offset,
        "key": KEY,
        "payload": payload,
    }


def test_a_dead_lettered_message_must_leave_no_status_behind() -> None:
    from services.runtime.ids import derive_id

    failed = letter(
        "handler failed on OrderApproved: InjectedFault: injected fault after recorded change #1",
        '{"event_id": "ev-approved-1"}',
    )
    assert inv.injected([failed, letter("handler failed: KeyError", "{}", offset=8)]) == [failed]
    clean = {KEY: [st("received", "a"), st("approved", "b")]}
    assert inv.no_trace([failed], clean) == []
    traced = {KEY: [*clean[KEY], st("reserved", derive_id("status", "ev-approved-1", "reserved"))]}
    assert inv.no_trace([failed], traced)
    other = "web:R-2"  # a refill of another order, derived from the failed message, is a trace too
    refilled = {**clean, other: [st("reserved", derive_id("status", f"ev-approved-1:{other}", "reserved"))]}
    assert inv.no_trace([failed], refilled)


def test_an_intake_submission_is_traced_by_its_submission_id() -> None:
    failed = letter("InjectedFault", '{"channel": "web", "channel_order_ref": "R-1", "revision": 1}', "intake")
    failed["topic"] = "orders.submitted"
    assert "submitted:web:R-1:1" in inv.causes(failed)


def test_a_waiting_order_holding_all_its_units_is_a_stranded_refill() -> None:
    waiting = {KEY: [st("received", "a"), st("approved", "b", total_amount="20.00"), st("backordered", "c")]}
    plans = {KEY: plan("backorder")}
    assert inv.waiting_hold_less(plans, waiting, {"SO-1": 1}) == []
    assert inv.waiting_hold_less(plans, waiting, {"SO-1": 2})
    assert inv.waiting_hold_less(plans, {KEY: HAPPY}, {"SO-1": 2}) == []  # reserved: it may hold them all


def test_coming_back_to_a_state_is_a_new_step_but_a_rebuilt_step_is_not() -> None:
    taken = [*HAPPY, st("backordered", "d"), st("reserved", "e", **ALLOC)]  # a priority order took its stock
    assert inv.one_event_per_transition({KEY: taken}) == []
    assert inv.one_event_per_transition({KEY: [*HAPPY, st("reserved", "f", **ALLOC)]})
    slipped = [*HAPPY[:2], st("backordered", "g"), st("backordered", "h")]  # the promise slipped
    assert inv.one_event_per_transition({KEY: slipped}) == []


def test_a_shipment_of_a_revoked_allocation_must_be_voided() -> None:
    taken = {KEY: [*HAPPY, st("backordered", "d")]}
    opened = {
        "type": "shipment.opened",
        "order_number": "SO-1",
        "shipment_id": "SO-1-WH-EAST-1",
        "event_id": "o",
        "warehouse": "WH-EAST",
        "lines": [{"sku": "SKU-0001", "quantity": 2}],
    }
    voided = {"type": "shipment.voided", "shipment_id": "SO-1-WH-EAST-1", "event_id": "v"}
    assert inv.shipments(taken, [opened])[0] == ["web:R-1: shipment SO-1-WH-EAST-1 opened for an order backordered"]
    assert inv.shipments(taken, [opened, voided])[0] == []
    assert inv.shipments({KEY: HAPPY}, [opened, voided])[0]  # voided while the order still holds its allocation
