"""What the dashboard shows, computed from lag samples and `orders.status`: rates, trends, orders per status,
stuck orders. Pure: no I/O, the clock is passed in."""

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition

from contracts import topics
from contracts.public import STATUSES
from orderflow.lag import PartitionLag
from services.runtime.status import repeats_view

# The topics each service publishes to (its `Outgoing.of(topics.X, …)` calls; every service also answers on
# orders.status and dead-letters to orders.dlq). A unit test checks this against the services' code.
WRITES: dict[str, tuple[str, ...]] = {
    "intake": (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.ORDERS_ACCEPTED, topics.ORDERS_SHIPPING),
    "review": (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.ORDERS_APPROVED),
    "inventory": (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.INVENTORY_ALLOCATIONS, topics.ORDERS_CANCELLED),
    "fulfillment": (
        topics.ORDERS_STATUS,
        topics.ORDERS_DLQ,
        topics.FULFILLMENT_SHIPMENTS,
        topics.SUPPLY_INSTRUCTIONS,
        topics.FULFILLMENT_DISPATCHED,
        topics.FINANCE_INVOICE_REQUESTS,
        topics.ORDERS_CANCELLED,
    ),
}
TREND_SAMPLES = 90
# the default stuck rule of `orderflow dashboard --stuck` and the console's stuck queue
STUCK = "awaiting_customer_decision=2d,awaiting_priority_approval=1d,in_review=1d,needs_clarification=3d"
STUCK_SHOWN = 12
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def own_topics(service: str) -> tuple[str, ...]:
    """The topics only `service` writes: their log-end growth is its output rate (shared topics are shown per
    topic, since their growth cannot be split between writers)."""
    return tuple(t for t in WRITES[service] if sum(t in w for w in WRITES.values()) == 1)


def parse_stuck(spec: str) -> dict[str, float]:
    """`status=age,…` (age like 90s, 30m, 4h, 2d) as seconds per status; ValueError on an unknown status or age."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, age = part.partition("=")
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", age.strip())
        if name.strip() not in STATUSES or match is None:
            raise ValueError(f"expected status=age (e.g. awaiting_customer_decision=2d), got {part!r}")
        out[name.strip()] = float(match[1]) * _UNITS[match[2]]
    return out


@dataclass
class Current:
    """An order's newest status, when it was announced and since when the order has been in it."""

    status: str
    at: float
    since: float
    order_number: str | None


def occurred_time(msg: Mapping[str, Any], timestamp_ms: int) -> float:
    """When a status happened: its `occurred_at`, else (absent or unreadable) the Kafka record's timestamp."""
    raw = msg.get("occurred_at")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw).timestamp()
        except ValueError:
            pass
    return timestamp_ms / 1000


@dataclass
class StatusBoard:
    """The newest status of every order seen on `orders.status` (keyed by channel:channel_order_ref)."""

    orders: dict[str, Current] = field(default_factory=dict)
    read_to: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read

    def apply(self, partition: int, offset: int, key: str | None, msg: Any, timestamp_ms: int) -> None:
        """Take one decoded status message: the newest `occurred_at` wins (a later offset breaks ties; an older
        redelivery, a refusal or an ignored message changes nothing); restating the same status keeps the time
        the order entered it. Anything that is not a status message only moves the read position."""
        self.read_to[partition] = offset + 1
        if not isinstance(msg, dict) or msg.get("status") not in STATUSES:
            return
        details = msg.get("details")
        if isinstance(details, dict) and repeats_view(details):
            return  # the order did not change
        key = key or f"{msg.get('channel')}:{msg.get('channel_order_ref')}"
        at, cur = occurred_time(msg, timestamp_ms), self.orders.get(key)
        if cur is not None and at < cur.at:
            return
        since = cur.since if cur is not None and cur.status == msg["status"] else at
        number = msg.get("order_number") or (cur.order_number if cur is not None else None)
        self.orders[key] = Current(str(msg["status"]), at, since, number)

    def counts(self) -> dict[str, int]:
        """Orders per current status, every status listed (lifecycle order)."""
        out = dict.fromkeys(STATUSES, 0)
        for cur in self.orders.values():
            out[cur.status] += 1
        return out

    def stuck(self, now: float, thresholds: dict[str, float]) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """Orders in a status longer than its threshold: the count per status and the longest-waiting few."""
        counts = dict.fromkeys(thresholds, 0)
        late: list[tuple[float, str, Current]] = []
        for key, cur in self.orders.items():
            limit = thresholds.get(cur.status)
            if limit is not None and now - cur.since > limit:
                counts[cur.status] += 1
                late.append((now - cur.since, key, cur))
        late.sort(key=lambda item: -item[0])
        shown = [
            {"order": key, "order_number": cur.order_number, "status": cur.status, "age_s": round(age, 1)}
            for age, key, cur in late[:STUCK_SHOWN]
        ]
        return counts, shown


@dataclass
class Sample:
    """One lag measurement with the log ranges of every topic, at wall-clock time `at`."""

    at: float
    rows: list[PartitionLag]
    ranges: dict[TopicPartition, tuple[int, int]]


def _rate(now: float, before: float, seconds: float) -> float:
    return round(max(0.0, now - before) / seconds, 2) if seconds > 0 else 0.0


@dataclass
class History:
    """The last samples: per-service lag trend and message rates between consecutive samples."""

    trend: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    last: Sample | None = None

    def add(self, sample: Sample) -> dict[str, Any]:
        """Record `sample`; returns per-service figures (lag, trend, oldest age, rates) and per-topic figures."""
        prev, self.last = self.last, sample
        dt = sample.at - prev.at if prev is not None else 0.0
        services: dict[str, Any] = {}
        for name in WRITES:
            mine = [r for r in sample.rows if r.group == name]
            total = sum(r.lag for r in mine)
            self.trend.setdefault(name, deque(maxlen=TREND_SAMPLES)).append((sample.at, total))
            ages = [r.oldest_age_s for r in mine if r.lag > 0 and r.oldest_age_s is not None]
            consumed = ended = 0.0
            if prev is not None:
                before = {(r.topic, r.partition): r.position for r in prev.rows if r.group == name}
                consumed = sum(r.position - before.get((r.topic, r.partition), r.position) for r in mine)
                ended = sum(_end(sample, t) - _end(prev, t) for t in own_topics(name))
            services[name] = {
                "name": name,
                "lag": total,
                "lagging_partitions": sum(1 for r in mine if r.lag > 0),
                "oldest_age_s": max(ages) if ages else None,
                "in_rate": _rate(consumed, 0, dt),
                "out_rate": _rate(ended, 0, dt),
                "writes": list(own_topics(name)),
                "trend": [[round(t, 1), v] for t, v in self.trend[name]],
            }
        names = dict.fromkeys(tp.topic for tp in sample.ranges)
        per_topic = [
            {
                "topic": t,
                "messages": sum(e - s for tp, (s, e) in sample.ranges.items() if tp.topic == t),
                "rate": _rate(_end(sample, t) - _end(prev, t), 0, dt) if prev is not None else 0.0,
                "writers": [s for s, w in WRITES.items() if t in w],
            }
            for t in names
        ]
        return {"services": list(services.values()), "topics": per_topic}


def _end(sample: Sample, topic: str) -> int:
    return sum(e for tp, (_, e) in sample.ranges.items() if tp.topic == topic)
