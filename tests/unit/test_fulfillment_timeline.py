"""The order timeline read model: entries, deduplication, summaries, and no contact data kept."""

from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.common import Reason
from contracts.public import OrderStatus
from orderflow import track
from services.fulfillment import store, timeline
from services.fulfillment.store import Timeline

NOW = datetime(2026, 11, 27, 8, 15, 2, tzinfo=UTC)


def msg(event_id: str, name: str = "received", **kw: Any) -> OrderStatus:
    return OrderStatus(
        event_id=event_id,
        channel="web",
        channel_order_ref="WEB-1",
        status=name,
        occurred_at=NOW,
        **kw,
    )


def add(st: Timeline | None, m: OrderStatus) -> Timeline:
    new = timeline.append(st or timeline.start("web:WEB-1", m), m)
    assert new is not None
    return new


def test_append_keeps_order_and_drops_republished_statuses() -> None:
    st = add(None, msg("e1", "needs_clarification"))
    st = add(st, msg("e2", "received", order_number="SO-1", revision=2))
    assert timeline.append(st, msg("e1", "needs_clarification")) is None
    assert [e.status for e in st.entries] == ["needs_clarification", "received"]
    assert st.order_number == "SO-1" and st.order_key == "web:WEB-1"
    assert st.entries[1].revision == 2 and st.to_doc()["entries"][1]["occurred_at"] == NOW.isoformat()
    assert timeline.last_status(st) == "received" and timeline.last_status(None) is None
    assert Timeline.from_doc(st.to_doc()) == st


def at(st: Timeline, m: OrderStatus, offset: int | None) -> Timeline:
    new = timeline.append(st, m, offset)
    assert new is not None
    return new


def test_a_status_recorded_with_its_decision_settles_into_topic_order_when_it_comes_back() -> None:
    st = at(timeline.start("web:WEB-1", msg("r")), msg("r", "received"), 10)
    st = at(st, msg("own", "shipped"), None)  # fulfillment's, recorded when it decided
    st = at(st, msg("x", "reserved"), 12)  # another service's, published before fulfillment's
    st = at(st, msg("own2", "delivered"), None)  # fulfillment's next one
    settled = timeline.settle(st, "own", 13)
    assert settled is not None
    assert [e.event_id for e in settled.entries] == ["r", "x", "own", "own2"]
    assert [e.at for e in settled.entries] == [10, 12, None, None]
    assert timeline.settle(settled, "own", 13) is None  # settled: a redelivery moves nothing
    assert timeline.settle(settled, "own2", 14) is None  # nothing published before it was recorded after it
    assert timeline.settle(settled, "r", 10) is None  # consumed, not recorded by a decision
    assert timeline.settle(st, "own", 11) is None  # `x` was published after it: it stays where it is


def test_the_offset_is_stored_but_track_never_shows_it() -> None:
    st = at(timeline.start("web:WEB-1", msg("r")), msg("r", "received"), 10)
    assert st.to_doc()["entries"][0]["at"] == 10 and Timeline.from_doc(st.to_doc()).entries[0].at == 10
    assert "at" not in at(st, msg("own", "shipped"), None).to_doc()["entries"][1]


def test_a_runaway_timeline_keeps_its_latest_entries() -> None:
    st: Timeline | None = None
    for i in range(timeline.ENTRY_LIMIT + 7):
        st = add(st, msg(f"e{i}"))
    assert st is not None and len(st.entries) == timeline.ENTRY_LIMIT and st.dropped == 7
    assert st.entries[0].event_id == "e7"


@pytest.mark.parametrize(
    ("details", "summary"),
    [
        ({}, ""),
        ({"charges": [], "total_amount": "110.00"}, "total amount: 110.00"),
        (
            {"charges": [{"code": "packaging", "description": "export carton", "amount": "2.00"}]},
            "charges: packaging 2.00",
        ),
        (
            {"allocations": [{"warehouse": "WH-EAST", "lines": [{"line_no": 1, "sku": "A", "quantity": 2}]}]},
            "allocations: WH-EAST: A×2",
        ),
        ({"shipment_id": "S-1", "lines": [{"line_no": 1, "sku": "A", "quantity": 2}]}, "shipment id: S-1; lines: A×2"),
        ({"refused": "order.cancel"}, "refused: order.cancel"),
        ({"ignored": True, "complete": False}, "ignored; complete: no"),
        (
            {
                "options": {
                    "ship_partial": {"1": 3},
                    "remainder": ["cancel", "backorder"],
                    "wait": {"promise_date": "2026-12-09"},
                    "substitute": {"1": ["B"]},
                    "cancel": True,
                }
            },
            "options: ship_partial, rest cancel or backorder, wait (until 2026-12-09), substitute (B), cancel",
        ),
        ({"options": {"ship_partial": {}, "wait": {"promise_date": None}, "substitute": {"1": []}}}, "options: none"),
    ],
)
def test_details_are_summarized(details: dict[str, Any], summary: str) -> None:
    assert timeline.summarize(details) == summary


def test_summaries_are_bounded() -> None:
    assert len(timeline.summarize({"note": "x" * 5000})) == timeline.SUMMARY_LIMIT


def test_contact_data_is_never_kept() -> None:
    reasons = [
        Reason(code="invalid_format", field="customer.email", message="(customer.email) 'li@@x' is not valid."),
        Reason(code="invalid_format", field="customer.phone", message="(customer.phone) '+86 1' is not valid."),
        Reason(code="unknown_value", field="customer.customer_id", message="'C-1' is unknown"),
        Reason(code="x", field=None, message="write to li.wei@example.com"),
    ]
    details = {
        "ship_to": {"recipient": "Li Wei", "city": "Hangzhou"},
        "contact_name": "Li Wei",
        "email": "li.wei@example.com",
        "phone": "+86 571 5550 1234",
        "nested": {"recipient": "Li Wei", "sku": "A"},
        "remark": "li.wei@example.com",
    }
    e = timeline.entry(msg("e1", "needs_clarification", reasons=reasons, details=details))
    text = repr(e.to_doc())
    for secret in ("li@@x", "+86", "Li Wei", "li.wei@example.com", "Hangzhou"):
        assert secret not in text, secret
    assert "'C-1' is unknown" in text  # not contact data: kept as written
    assert e.details == "nested: {sku A}; remark: [email]"


@pytest.mark.parametrize(
    ("ref", "is_key"),
    [("web:WEB-1", True), ("sales_rep:A:B", True), ("SO-20261127-000042", False), ("web:", False), ("x:Y", False)],
)
def test_order_key_or_number(ref: str, is_key: bool) -> None:
    assert store.is_order_key(ref) is is_key


def test_render_shows_every_step_with_who_decided() -> None:
    st = add(None, msg("e1", "received", order_number="SO-1", decided_by="intake/1"))
    st = add(
        st,
        msg(
            "e2",
            "rejected",
            order_number="SO-1",
            revision=1,
            reasons=[Reason(code="credit_limit_exceeded", field=None, message="over the limit")],
            decided_by="review-rules/1",
        ),
    )
    text = track.render(st.to_doc())
    assert "SO-1" in text and "web:WEB-1" in text
    for word in ("received", "intake/1", "rejected", "credit_limit_exceeded", "review-rules/1", "2026-11-27 08:15:02"):
        assert word in text, word


def test_a_narrow_console_gets_a_list_instead_of_a_table() -> None:
    st = add(
        None,
        msg(
            "e1",
            "in_production",
            order_number="SO-1",
            revision=1,
            promise_date=datetime(2026, 12, 9).date(),
            reasons=[Reason(code="promise_slipped", field=None, message="late")],
            decided_by="fulfillment/1",
        ),
    )
    text = track.render(st.to_doc(), width=80)
    assert "┃" not in text
    assert "  1  2026-11-27 08:15:02  in_production  rev 1  promise 2026-12-09  by fulfillment/1" in text
    assert "reason  promise_slipped: late" in text and "times UTC" in text
