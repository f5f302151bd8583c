"""The benchmark's load: the order mix, pre-encoded open-loop offering timed from each order's intended
send time, the search for the sustained rate, and the drift check.

Every figure here is about orders the bench *meant* to send at a given instant: a generator that falls
behind does not hide the wait (no coordinated omission), because latency starts at the intended time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from contracts import topics
from orderflow import bus, sample
from services.runtime.kafka import client_kwargs

PLACEHOLDER = b"@@BENCH-REF@@"
SHORT_SKU = "LAMP-RARE"  # 5 units on hand (orderflow.sample.stock): more than that is a shortage
SHORT_STATUS = "awaiting_customer_decision"
VIP = "C-1002"  # orderflow.sample.customers: a VIP's short order asks for priority instead


@dataclass(frozen=True)
class Mix:
    """What share of orders is short of stock, goes to the hot SKUs, comes from credit customers."""

    shortage: float = 0.05
    hot: float = 0.10
    hot_skus: int = 20
    credit: float = 0.30

    def __post_init__(self) -> None:
        for name in ("shortage", "hot", "credit"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"Mix.{name} must be a share between 0 and 1, not {value!r}")
        if self.shortage + self.hot > 1:
            raise ValueError(f"Mix.shortage + Mix.hot must not exceed 1 (got {self.shortage} + {self.hot})")
        if self.hot_skus < 1:
            raise ValueError(f"Mix.hot_skus must be at least 1, not {self.hot_skus}")


@dataclass(frozen=True)
class Template:
    """A serialised order with a placeholder reference, the status it settles in and its write figures."""

    channel: str
    raw: bytes
    lines: int
    stock_docs: int  # distinct SKUs inventory loads and writes: the lines' and their substitutes'
    kind: str = "spread"  # spread | hot | shortage
    expect: str = "reserved"


def _template(order: dict[str, Any], substitutes: dict[str, list[str]], kind: str, expect: str) -> Template:
    picked = {line["sku"] for line in order["lines"]}
    touched = picked | {s for sku in picked for s in substitutes.get(sku, [])}
    raw = json.dumps(order, separators=(",", ":")).encode()
    return Template(order["channel"], raw, len(order["lines"]), len(touched), kind, expect)


def mix_pool(
    count: int, customers: Sequence[str], products: Sequence[dict[str, Any]], mix: Mix = Mix(), seed: int = 11
) -> list[Template]:
    """`count` orders shuffled in the mix's shares: shortages (one line of LAMP-RARE beyond its 5 units,
    settling in awaiting_customer_decision), hot orders (lines only on the first `hot_skus` SKUs), the rest
    spread over the other SKUs; a `credit` share from credit customers (sample: even ids), none from C-9999."""
    skus = sorted(p["sku"] for p in products if p["sku"].startswith("SKU-"))
    if len(skus) <= mix.hot_skus:
        raise ValueError(f"the mix needs more than {mix.hot_skus} SKU-* products, got {len(skus)}")
    if not any(p["sku"] == SHORT_SKU for p in products) and mix.shortage:
        raise ValueError(f"a mix with shortages needs the product {SHORT_SKU}")
    usable = [c for c in customers if c != "C-9999"]
    credit = [c for c in usable if int(c.removeprefix("C-")) % 2 == 1]  # C-1001, C-1003, ...: i even
    prepaid = [c for c in usable if c not in credit]
    if not credit or not [c for c in prepaid if c != VIP]:
        raise ValueError("the mix needs credit and non-VIP prepaid customers (orderflow.sample.customers)")
    hot, spread = skus[: mix.hot_skus], skus[mix.hot_skus :]
    substitutes = {p["sku"]: list(p["substitutes"]) for p in products}
    rng = random.Random(seed)
    now = datetime.now(UTC)
    shortages = round(count * mix.shortage)
    hots = round(count * mix.hot)
    kinds = ["shortage"] * shortages + ["hot"] * hots + ["spread"] * (count - shortages - hots)
    rng.shuffle(kinds)
    ref = PLACEHOLDER.decode()
    out = []
    for kind in kinds:
        customer = rng.choice(credit if rng.random() < mix.credit else prepaid)
        if kind == "shortage":
            customer = customer if customer != VIP else next(c for c in prepaid if c != VIP)
            order = sample.order(ref, rng, now, customer=customer, skus=[SHORT_SKU], lines=1, quantities=(6, 20))
            out.append(_template(order, substitutes, kind, SHORT_STATUS))
            continue
        pool = hot if kind == "hot" else spread
        order = sample.order(ref, rng, now, customer=customer, skus=pool, lines=rng.randint(1, min(10, len(pool))))
        out.append(_template(order, substitutes, kind, "reserved"))
    return out


def hot_pool(
    count: int, customers: Sequence[str], products: Sequence[dict[str, Any]], seed: int = 13
) -> list[Template]:
    """`count` orders all on the given customers and on the first SKU-* products (a flash sale, a key
    account): 1 to len(products) lines each, every one expected to reach reserved."""
    skus = [p["sku"] for p in products if p["sku"].startswith("SKU-")]
    if not customers or not skus:
        raise ValueError("a hot pool needs at least one customer and one SKU-* product")
    substitutes = {p["sku"]: list(p["substitutes"]) for p in products}
    rng = random.Random(seed)
    now = datetime.now(UTC)
    ref = PLACEHOLDER.decode()
    return [
        _template(
            sample.order(
                ref, rng, now, customer=rng.choice(list(customers)), skus=skus, lines=rng.randint(1, len(skus))
            ),
            substitutes,
            "hot",
            "reserved",
        )
        for _ in range(count)
    ]


# ------------------------------------------------------------------------------------------ offering


@dataclass(frozen=True)
class Encoded:
    """One order ready to send: key, value, partition, the status it settles in."""

    key: str
    raw_key: bytes
    value: bytes
    partition: int
    expect: str


def encode(pool: Sequence[Template], marker: str, tag: str, total: int, partitions: Sequence[int]) -> list[Encoded]:
    """`total` orders from the pool (cycled), references `<marker><tag>-<n>`, partitioned as the producer's
    default partitioner would (murmur2 of the key), so a key keeps its partition as with `send`."""
    if not pool:
        raise ValueError("encode needs a non-empty pool of templates")
    if not partitions:
        raise ValueError("encode needs the topic's partitions")
    parts = sorted(partitions)
    partitioner = DefaultPartitioner()
    out = []
    for n in range(total):
        tpl = pool[n % len(pool)]
        ref = f"{marker}{tag}-{n:07d}"
        key = f"{tpl.channel}:{ref}"
        raw_key = key.encode()
        value = tpl.raw.replace(PLACEHOLDER, ref.encode())
        out.append(Encoded(key, raw_key, value, partitioner(raw_key, parts, parts), tpl.expect))
    return out


def intended_times(start: float, rate: float, count: int) -> list[float]:
    """The instant order n is meant to leave at `rate`/s from `start`: start + n / rate."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate!r}")
    return [start + n / rate for n in range(count)]


@dataclass
class Offered:
    """What an offer did: each key's intended send time (wall clock), how long sending took, the bench's CPU."""

    intended: dict[str, float]
    sending_s: float
    cpu_s: float
    behind_max_s: float  # how far the generator fell behind its schedule at worst


async def offer(
    producer: AIOKafkaProducer, messages: Sequence[Encoded], rate: float, topic: str = topics.ORDERS_SUBMITTED
) -> Offered:
    """Send `messages` open-loop at `rate`/s: every tick, all orders now due go out as one batch per partition;
    order n's intended time is start + n/rate whether or not the generator kept up; all acked at the end."""
    wall0, mono0, cpu0 = time.time(), time.monotonic(), time.process_time()
    intended = dict(zip((m.key for m in messages), intended_times(wall0, rate, len(messages)), strict=True))
    futures: list[asyncio.Future[Any]] = []
    n, behind = 0, 0.0
    while n < len(messages):
        elapsed = time.monotonic() - mono0
        due = min(len(messages), math.floor(elapsed * rate) + 1)
        if due > n:
            behind = max(behind, elapsed - n / rate)
            futures += await send_batches(producer, topic, messages[n:due])
            n = due
        await asyncio.sleep(max(0.0, min(0.01, n / rate - (time.monotonic() - mono0))))
    sending = time.monotonic() - mono0
    await asyncio.gather(*futures)
    return Offered(intended, sending, time.process_time() - cpu0, round(behind, 3))


async def send_batches(
    producer: AIOKafkaProducer, topic: str, messages: Iterable[Encoded]
) -> list[asyncio.Future[Any]]:
    """Append the messages to one record batch per partition (a new one when full) and submit them."""
    open_: dict[int, Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for m in messages:
        batch = open_.get(m.partition)
        if batch is None:
            batch = open_[m.partition] = producer.create_batch()
        if batch.append(key=m.raw_key, value=m.value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=m.partition))
            batch = open_[m.partition] = producer.create_batch()
            if batch.append(key=m.raw_key, value=m.value, timestamp=None) is None:
                raise ValueError(f"an order of {len(m.value)} bytes does not fit in a record batch")
    for partition, batch in open_.items():
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


# ------------------------------------------------------------------------------------------ following


@dataclass
class Follower:
    """The first time (message timestamp, s) each status of each order with the marker was published."""

    marker: str
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: int = 0

    def add(self, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        """Record one orders.status record (others' orders are skipped before decoding)."""
        if key is None or value is None or self.marker.encode() not in key:
            return
        try:
            status = json.loads(value).get("status")
        except (ValueError, AttributeError):
            return
        if isinstance(status, str):
            self.statuses += 1
            self.seen.setdefault(key.decode(), {}).setdefault(status, timestamp_ms / 1000)

    async def follow(self, bootstrap: str, start: dict[int, int]) -> None:
        """Follow `orders.status` from `start` (partition -> offset) until cancelled."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs())
        await consumer.start()
        try:
            tps = [
                TopicPartition(topics.ORDERS_STATUS, p) for p in await bus.partitions(consumer, topics.ORDERS_STATUS)
            ]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, start.get(tp.partition, 0))
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for recs in batch.values():
                    for r in recs:
                        self.add(r.key, r.value, r.timestamp)
        finally:
            await consumer.stop()

    def settled(self, keys: Iterable[str], expect: dict[str, str]) -> int:
        """How many of `keys` reached the status each is expected to settle in."""
        return sum(1 for k in keys if expect.get(k, "reserved") in self.seen.get(k, ()))


def latencies(
    keys: Iterable[str], intended: dict[str, float], seen: dict[str, dict[str, float]], stage: str
) -> list[tuple[float, float]]:
    """(intended send time, seconds from it to `stage`) for each key that reached `stage`, in intended order."""
    out = [(intended[k], seen[k][stage] - intended[k]) for k in keys if stage in seen.get(k, ())]
    return sorted(out)


# ------------------------------------------------------------------------------------------ judging


def drift(points: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """How much a series grew across [start, end]: median of its last third minus median of its first third
    (0 with fewer than 6 points in the window)."""
    window = sorted(v for v in points if start <= v[0] <= end)
    if len(window) < 6:
        return 0.0
    third = len(window) // 3
    first = statistics.median(v for _, v in window[:third])
    last = statistics.median(v for _, v in window[-third:])
    return float(last - first)


@dataclass
class Search:
    """The sustained rate by search: double from `start` until a step fails (or `ceiling`), halve until one
    holds (down to `floor`), then bisect between the highest rate that held and the lowest that failed until
    they are within `precision` (relative) or `max_steps` steps ran."""

    start: int
    floor: int = 5
    ceiling: int = 4000
    precision: float = 0.10
    max_steps: int = 8
    history: list[tuple[int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.start <= self.ceiling:
            raise ValueError(
                f"Search needs 0 < floor <= start <= ceiling, got {self.floor}, {self.start}, {self.ceiling}"
            )
        if self.precision <= 0 or self.max_steps < 1:
            raise ValueError(f"Search needs precision > 0 and max_steps >= 1, got {self.precision}, {self.max_steps}")

    @property
    def held(self) -> int:
        """The highest rate that held (0 when none did)."""
        return max((r for r, ok in self.history if ok), default=0)

    @property
    def failed(self) -> int | None:
        """The lowest rate that failed above the highest that held (None when none did)."""
        return min((r for r, ok in self.history if not ok and r > self.held), default=None)

    def record(self, rate: int, held: bool) -> None:
        """Note the outcome of a step at `rate`."""
        self.history.append((rate, held))

    def next_rate(self) -> int | None:
        """The next rate to try, or None when the search is done."""
        if not self.history:
            return self.start
        if len(self.history) >= self.max_steps:
            return None
        held, failed = self.held, self.failed
        if failed is None:
            return min(self.ceiling, held * 2) if held < self.ceiling else None
        if held == 0:
            lower = failed // 2
            return lower if lower >= self.floor else None
        if failed - held <= max(1, self.precision * held):
            return None
        return (held + failed) // 2
