"""The read model: duplicates taken once, out-of-order statuses in the timeline without moving the order back,
refusals never changing it, a replayed batch changing nothing, the newest submission kept; queues page by key."""

from typing import Any

import pytest

from orderflow.console import queues
from orderflow.console.readmodel import Record, apply_status, event_of, new_order
from tests.console.conftest import Rig

KEY = "phone:PH-1"


def status(event_id: str, name: str, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "order.status", "version": 1, "event_id": event_id, "channel": "phone", "channel_order_ref": "PH-1",
            "status": name, "occurred_at": at, "reasons": [], "details": {}, **extra}  # fmt: skip


def test_an_older_status_after_a_newer_one_does_not_move_the_order_back() -> None:
    order = new_order(KEY)
    newer = event_of(Record("orders.status", 0, 5, KEY, status("e2", "reserved", "2026-12-03T10:00:02+00:00"), 0))
    older = event_of(Record("orders.status", 0, 6, KEY, status("e1", "approved", "2026-12-03T10:00:01+00:00"), 0))
    assert newer and older
    assert apply_status(order, newer) is True
    assert apply_status(order, older) is False
    assert (order["status"], order["last_event"]) == ("reserved", "e1")


def test_restating_the_current_status_keeps_the_time_it_was_entered() -> None:
    order = new_order(KEY)
    for i, at in enumerate(("2026-12-03T10:00:00+00:00", "2026-12-03T11:00:00+00:00")):
        ev = event_of(Record("orders.status", 0, i, KEY, status(f"e{i}", "in_review", at), 0))
        assert ev and apply_status(order, ev)
    first = event_of(Record("orders.status", 0, 0, KEY, status("x", "in_review", "2026-12-03T10:00:00+00:00"), 0))
    assert first is not None and order["since"] == first["at"]


async def test_a_duplicate_event_is_taken_once_and_a_refusal_changes_nothing(rig: Rig) -> None:
    received = status("e1", "received", "2026-12-03T10:00:00+00:00", order_number="SO-20261203-000001")
    in_review = status("e2", "in_review", "2026-12-03T10:00:01+00:00")
    refused = status("e3", "received", "2026-12-03T10:00:05+00:00", details={"refused": True})
    await rig.feed("orders.status", KEY, received, in_review, received, in_review)
    await rig.feed("orders.status", KEY, in_review, refused)
    model = rig.console.model
    order = await model.order(KEY)
    assert order is not None and order["status"] == "in_review" and order["order_number"] == "SO-20261203-000001"
    timeline = model.timeline(order)
    assert [(e["_id"], e["repeats"]) for e in timeline] == [("e1", False), ("e2", False), ("e3", True)]


async def test_statuses_arriving_out_of_order_end_at_the_newest(rig: Rig) -> None:
    msgs = [
        status("e3", "reserved", "2026-12-03T10:00:03+00:00"),
        status("e1", "received", "2026-12-03T10:00:01+00:00"),
        status("e2", "approved", "2026-12-03T10:00:02+00:00"),
    ]
    await rig.feed("orders.status", KEY, *msgs)
    order = await rig.console.model.order(KEY)
    assert order is not None and order["status"] == "reserved"
    assert [e["status"] for e in rig.console.model.timeline(order)] == ["received", "approved", "reserved"]


async def test_a_replayed_batch_after_a_crash_changes_nothing(rig: Rig) -> None:
    batch = [
        Record("orders.status", 0, 1, KEY, status("e1", "received", "2026-12-03T10:00:01+00:00"), 0),
        Record("orders.status", 0, 2, KEY, status("e2", "needs_clarification", "2026-12-03T10:00:02+00:00"), 0),
    ]
    model = rig.console.model
    assert await model.apply(batch) == 2
    before, row = await model.order(KEY), await model.rows.find_one({"_id": KEY})
    assert await model.apply(batch) == 0, "a replay after the write (offsets not committed) takes nothing"
    await model.orders.delete_one({"_id": KEY})  # a crash after the rows were written, before the order
    assert await model.apply(batch) == 2
    after = await model.order(KEY)
    assert before is not None and after is not None
    before.pop("updated"), after.pop("updated")
    assert before == after and await model.rows.find_one({"_id": KEY}) == row
    assert [e["_id"] for e in model.timeline(after)] == ["e1", "e2"]


async def test_the_newest_submitted_revision_is_kept_and_searchable(rig: Rig) -> None:
    def submitted(revision: int, city: str) -> dict[str, Any]:
        return {"type": "order.submitted", "version": 1, "channel": "phone", "channel_order_ref": "PH-1",
                "revision": revision, "customer": {"customer_id": "C-1001", "name": "Buyer Co."},
                "ship_to": {"city": city}}  # fmt: skip

    await rig.feed("orders.submitted", KEY, submitted(2, "Hangzhou"), submitted(1, ""))
    order = await rig.console.model.order(KEY)
    assert order is not None and order["submitted"]["revision"] == 2 and order["submitted"]["ship_to"]["city"]
    assert [o["_id"] for o in await rig.console.model.search("buyer")] == [KEY]
    assert [o["_id"] for o in await rig.console.model.search("c-1001")] == [KEY]
    assert [o["_id"] for o in await rig.console.model.search("PH-1")] == [KEY]


async def test_a_queue_pages_oldest_first_without_gaps_or_repeats(rig: Rig) -> None:
    for i in range(23):
        key = f"fax:FX-{i:03d}"
        await rig.feed("orders.status", key, {**status(f"r{i}", "in_review", f"2026-12-03T10:{i // 2:02d}:00+00:00"),
                                              "channel": "fax", "channel_order_ref": f"FX-{i:03d}"})  # fmt: skip
    model, review = rig.console.model, queues.QUEUES["review"]
    seen: list[str] = []
    cursor = None
    while True:
        rows, more = await model.page(review, queues.Filters(), rig.console.thresholds, cursor, size=5)
        seen += [r["_id"] for r in rows]
        if more is None:
            break
        cursor = queues.parse_after(more)
    assert seen == [f"fax:FX-{i:03d}" for i in range(23)]
    assert (await model.page(review, queues.Filters(channel="web"), rig.console.thresholds))[0] == []
    assert model.count(review, rig.console.thresholds) == 23
    live = model.index
    assert await model.load() == 23 and model.index == live, "the index rebuilt at start equals the live one"


def test_the_stuck_queue_holds_each_status_past_its_own_limit_oldest_first() -> None:
    index = queues.QueueIndex()
    now = 1_000_000.0
    for key, state, age_s, channel in [
        ("web:A", "in_review", 3 * 86400, "web"),  # limit 1d: stuck
        ("web:B", "in_review", 3600, "web"),  # not yet
        ("fax:C", "needs_clarification", 4 * 86400, "fax"),  # limit 3d: stuck
        ("fax:D", "needs_clarification", 2 * 86400, "fax"),  # not yet
        ("web:E", "reserved", 30 * 86400, "web"),  # no limit for reserved
    ]:
        index.put({"_id": key, "status": state, "since": now - age_s, "channel": channel, "terms": [key.lower()]})
    limits = {"in_review": 86400.0, "needs_clarification": 3 * 86400.0}
    stuck = queues.QUEUES["stuck"]
    assert index.keys(stuck, queues.Filters(), limits, None, 50, now) == (["fax:C", "web:A"], None)
    assert index.keys(stuck, queues.Filters(channel="web"), limits, None, 50, now) == (["web:A"], None)
    assert index.count(stuck, limits, now) == 2
    review = queues.QUEUES["review"]
    assert index.keys(review, queues.Filters(older_than_s=7200), limits, None, 50, now) == (["web:A"], None)
    assert index.keys(review, queues.Filters(customer="WEB:B"), limits, None, 50, now) == (["web:B"], None)
    index.put({"_id": "web:A", "status": "approved", "since": now, "channel": "web", "terms": []})
    assert index.count(stuck, limits, now) == 1 and index.search("web:a") == set()
    with pytest.raises(ValueError, match="since"):
        queues.parse_after("yesterday|web:A")
