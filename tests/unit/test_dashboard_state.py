"""The dashboard's figures: newest status per order, stuck orders, rates from consecutive lag samples, and the
map of which service writes which topic (checked against the services' code)."""

import re
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from contracts import topics
from orderflow import dashboard_metrics
from orderflow.dashboard_state import WRITES, History, Sample, StatusBoard, own_topics, parse_stuck
from orderflow.lag import PartitionLag

ROOT = Path(__file__).resolve().parents[2]


def status(status: str, at: str, number: str | None = None) -> dict[str, Any]:
    return {"status": status, "occurred_at": at, "order_number": number, "channel": "web", "channel_order_ref": "R1"}


def test_parse_stuck_reads_units_and_rejects_unknown_statuses() -> None:
    assert parse_stuck("awaiting_customer_decision=2d, in_review=90m,received=1.5h,invalid=30s") == {
        "awaiting_customer_decision": 172800.0,
        "in_review": 5400.0,
        "received": 5400.0,
        "invalid": 30.0,
    }
    assert parse_stuck("") == {}
    for bad in ("waiting=2d", "in_review=2w", "in_review", "in_review=-1d"):
        with pytest.raises(ValueError):
            parse_stuck(bad)


def test_newest_status_wins_and_an_older_redelivery_changes_nothing() -> None:
    board = StatusBoard()
    board.apply(0, 10, "web:R1", status("received", "2026-11-27T08:00:00+00:00", "SO-1"), 0)
    board.apply(0, 11, "web:R1", status("approved", "2026-11-27T08:00:05+00:00"), 0)
    board.apply(0, 12, "web:R1", status("received", "2026-11-27T08:00:00+00:00", "SO-1"), 0)  # redelivered
    board.apply(3, 4, "web:R2", status("reserved", "2026-11-27T08:00:01+00:00"), 0)
    board.apply(3, 5, "web:R3", {"_raw": "not a status"}, 0)
    assert board.counts()["approved"] == 1 and board.counts()["reserved"] == 1 and board.counts()["received"] == 0
    assert sum(board.counts().values()) == 2
    assert board.orders["web:R1"].order_number == "SO-1"
    assert board.read_to == {0: 13, 3: 6}


def test_an_order_is_stuck_from_when_it_entered_its_status_not_when_it_was_restated() -> None:
    board = StatusBoard()
    t0 = 1_800_000_000.0
    board.apply(0, 0, "web:R1", status("awaiting_customer_decision", "2027-01-15T08:00:00+00:00"), 0)
    board.apply(0, 1, "web:R1", status("awaiting_customer_decision", "2027-01-17T08:00:00+00:00"), 0)  # a refusal
    board.apply(0, 2, "web:R2", status("awaiting_customer_decision", "2027-01-17T07:00:00+00:00"), 0)
    entered = board.orders["web:R1"].since
    counts, oldest = board.stuck(entered + 2 * 86400 + 1, {"awaiting_customer_decision": 2 * 86400})
    assert counts == {"awaiting_customer_decision": 1}
    assert [o["order"] for o in oldest] == ["web:R1"]
    assert board.stuck(t0, {"in_review": 60}) == ({"in_review": 0}, [])


def test_a_message_without_occurred_at_is_placed_by_its_kafka_timestamp() -> None:
    board = StatusBoard()
    board.apply(1, 0, "web:R1", {"status": "received"}, 1_800_000_000_000)
    assert board.orders["web:R1"].since == 1_800_000_000.0


def row(group: str, topic: str, committed: int | None, end: int, part: int = 0) -> PartitionLag:
    return PartitionLag(group, topic, part, committed, 0, end, 0.0 if committed == end else 5.0)


def test_rates_come_from_committed_and_log_end_deltas_of_the_service_s_own_topics() -> None:
    history = History()
    ranges = {TopicPartition(topics.ORDERS_ACCEPTED, 0): (0, 100), TopicPartition(topics.ORDERS_STATUS, 0): (0, 500)}
    first = history.add(Sample(1000.0, [row("review", topics.ORDERS_ACCEPTED, 40, 100)], ranges))
    ranges = {TopicPartition(topics.ORDERS_ACCEPTED, 0): (0, 120), TopicPartition(topics.ORDERS_STATUS, 0): (0, 540)}
    second = history.add(Sample(1002.0, [row("review", topics.ORDERS_ACCEPTED, 80, 120)], ranges))
    review = next(s for s in second["services"] if s["name"] == "review")
    intake = next(s for s in second["services"] if s["name"] == "intake")
    assert next(s for s in first["services"] if s["name"] == "review")["in_rate"] == 0.0
    assert review["lag"] == 40 and review["in_rate"] == 20.0 and review["oldest_age_s"] == 5.0
    assert intake["out_rate"] == 10.0  # orderflow.orders.accepted is intake's alone; orders.status is shared
    assert review["trend"] == [[1000.0, 60], [1002.0, 40]]
    assert {t["topic"]: t["rate"] for t in second["topics"]} == {
        topics.ORDERS_ACCEPTED: 10.0,
        topics.ORDERS_STATUS: 20.0,
    }


def test_writes_matches_the_topics_each_service_publishes_to() -> None:
    for service, written in WRITES.items():
        code = "\n".join(p.read_text() for p in (ROOT / "services" / service).glob("*.py"))
        published = {getattr(topics, n) for n in re.findall(r"Outgoing\.of\(\s*topics\.([A-Z_]+)", code)}
        assert set(written) == published | {topics.ORDERS_STATUS, topics.ORDERS_DLQ}, service
    assert own_topics("review") == (topics.ORDERS_APPROVED,)
    assert topics.ORDERS_CANCELLED not in own_topics("inventory") + own_topics("fulfillment")


def test_exporter_renders_every_partition_without_order_data() -> None:
    rows = [row("inventory", topics.ORDERS_APPROVED, 3, 10, 2), row("intake", topics.ORDERS_SUBMITTED, None, 4)]
    state = {
        "dlq": {"size": 7},
        "orders": {"by_status": {"reserved": 2}},
        "stuck": {"counts": {"in_review": 1}},
        "sampled_at": 1.0,
    }
    text = dashboard_metrics.render(dashboard_metrics.registry(lambda: (rows, state))).decode()
    assert 'orderflow_consumer_lag{group="inventory",partition="2",topic="orderflow.orders.approved"} 7.0' in text
    assert 'orderflow_consumer_committed_offset{group="inventory",partition="2"' in text
    assert 'orderflow_consumer_committed_offset{group="intake"' not in text  # no commit: absent, not 0
    assert 'orderflow_consumer_oldest_unconsumed_age_seconds{group="inventory",partition="2"' in text
    assert "orderflow_dlq_messages 7.0" in text and 'orderflow_orders{status="reserved"} 2.0' in text
    assert "SO-" not in text and "web:" not in text


def test_a_refusal_restating_an_older_view_does_not_move_the_order() -> None:
    board = StatusBoard()
    board.apply(0, 1, "web:R1", status("reserved", "2026-11-27T08:00:05+00:00", "SO-1"), 0)
    refused = {**status("approved", "2026-11-27T08:00:09+00:00"), "details": {"refused": "order.review-decision"}}
    board.apply(0, 2, "web:R1", refused, 0)
    assert board.counts()["reserved"] == 1 and board.counts()["approved"] == 0
