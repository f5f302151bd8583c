"""`orderflow bench`: raw Kafka and document-store limits, then orders/s end to end through the four services.

One run, on the running servers, isolated like an e2e session (and serialised with them by the same lock):
its own databases (``bench_<run>_*``), consumer groups (``bench-<run>-<n>-``, started at the end of the
topics) and process directory. Steps: raw limits on a scratch topic and a scratch database, and the load
generator's own limit; master data (1,000 customers, 5,000 SKUs, ample stock except LAMP-RARE), then an
open-loop generator offers the realistic mix (orderflow.dev.bench_load: 5% shortages, 10% on 20 hot SKUs,
credit customers) at rates chosen by a bisection search, while ``orders.status`` is followed for latencies
from each order's intended send time, lag is polled and the processes are sampled. A step holds when p99
submitted->reserved < 1 s and neither lag nor latency drifts upwards across it. The full run plays the
warehouse simulator (shipments picked, dispatched, delivered) in its own process. A step that leaves a
backlog gets fresh services and consumer groups for the next one (the backlog is skipped). ``--hot``
compares all orders on 3 SKUs and 3 customers with the spread mix; ``--growth`` times one reservation
and one approval against 10, 1,000 and 10,000 open ones. Results go to
``bench/results/<timestamp>-<commit>.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from pymongo import UpdateOne
from pymongo.errors import PyMongoError

from contracts import topics
from orderflow import bus, lag, procs, sample, track
from orderflow.dev import bench_load, stack
from orderflow.dev.bench_load import PLACEHOLDER, Template
from orderflow.simulator import Simulator
from services.runtime.kafka import PARTITIONS, client_kwargs, ensure_topics

Say = Callable[[str], None]

RESULTS_DIR = stack.REPO_ROOT / "bench" / "results"
STAGES = ("received", "approved", "reserved")
PAYLOAD_SIZES = {"status": 600, "submitted": 1500}  # bytes: an order.status and an order.submitted
TARGET_P99_S = 1.0
LATENCY_DRIFT_S = 0.25  # median latency may rise by this much from a step's first third to its last
FULL_MIN_STEP_S = 60.0
GENERATOR_RATE = 1000  # orders/s the load generator is checked at (its own limit must exceed 500/s)
HOT_CUSTOMERS = ("C-1001", "C-1003", "C-1005")  # credit customers: a key account's credit is checked
HOT_SKUS = ("SKU-0100", "SKU-0101", "SKU-0102")
HOT_LOW_RATE = 30
GROWTH_LEVELS = (10, 1000, 10_000)
GROWTH_SKU, GROWTH_CUSTOMER = "SKU-0200", "C-1007"
GROWTH_PROBES = 9
# --growth times single orders: its services fetch a record as soon as it lands and poll every 5 ms, so a probe
# times the decision, not where it fell in a batching wait (up to the fetch wait plus FastStream's pause after an
# empty poll: 0-150 ms, which made the medians of 9 probes vary 2x between levels; session 17).
GROWTH_TIMED = ("intake", "review", "inventory")
GROWTH_FETCH = {"FETCH_MIN_BYTES": "1", "FETCH_MAX_WAIT_MS": "500", "POLL_MS": "5"}
WARMUP_ORDERS = 5
WARMUP_LOAD_S = 20.0  # a full run's warm-up at the first step's rate on fresh services (session 10)
STEP_OVERHEAD_S = 20.0  # a step's snapshots, drain and restart around its offered and grace time
MB = 1024 * 1024


def growth_env() -> dict[str, str]:
    """The timed services' fetch settings in a --growth run (GROWTH_FETCH)."""
    return {f"{service.upper()}_{name}": value for service in GROWTH_TIMED for name, value in GROWTH_FETCH.items()}


@dataclass(frozen=True)
class Plan:
    """What one run does: fixed rates or the search's bounds, step length, raw-limit duration, master data size."""

    rates: tuple[int, ...]  # fixed offered rates; empty: search for the sustained rate
    step_seconds: float
    grace_seconds: float
    raw_seconds: float
    quick: bool
    shipping: bool = False
    custom: bool = False  # rates or step time given on the command line
    customers: int = 1000
    skus: int = 5000
    log_level: str = "INFO"
    search_start: int = 50
    max_steps: int = 9
    budget_seconds: float = 0.0  # no step starts that would end later than this into the run (0: no limit)
    mode: str = "throughput"  # throughput | hot | growth
    levels: tuple[int, ...] = GROWTH_LEVELS


def make_plan(
    quick: bool,
    rates: tuple[int, ...] = (),
    seconds: float = 0,
    shipping: bool = False,
    log_level: str = "INFO",
    mode: str = "throughput",
    levels: tuple[int, ...] = (),
) -> Plan:
    """The plan for a quick (CI, < 3 min, 10 s steps) or a full run (steps of at least 60 s, the simulator
    shipping); `rates` fixes the offered rates instead of searching (with --hot: the rates compared)."""
    if mode not in ("throughput", "hot", "growth"):
        raise ValueError(f"bench mode must be throughput, hot or growth, not {mode!r}")
    if any(r <= 0 for r in rates):
        raise ValueError(f"offered rates must be positive, got {rates}")
    if levels and (any(n < 1 for n in levels) or list(levels) != sorted(set(levels))):
        raise ValueError(f"growth levels must be increasing positive counts, got {levels}")
    custom = bool(rates or seconds)
    extra: dict[str, Any] = {"log_level": log_level, "mode": mode, "levels": levels or GROWTH_LEVELS}
    if mode == "growth":
        extra |= {"customers": 50, "skus": 500}
    if quick:
        extra = {"customers": 200, "skus": 1000} | extra  # master data loads in seconds
        return Plan(
            rates,
            seconds or 10,
            4,
            1.0,
            True,
            shipping,
            custom,
            search_start=25,
            max_steps=6,
            budget_seconds=140,
            **extra,
        )
    if seconds and seconds < FULL_MIN_STEP_S:
        raise ValueError(f"a full run's steps last at least {FULL_MIN_STEP_S:.0f} s (use --quick for short ones)")
    return Plan(rates, seconds or FULL_MIN_STEP_S, 15, 5, False, mode != "growth", custom, **extra)


# ------------------------------------------------------------------------------------------ isolation


def lock_path(bootstrap: str) -> Path:
    """The lock e2e and chaos sessions take per broker (tests/isolation.py); the bench holds it too."""
    broker = bootstrap.replace(":", "_").replace(",", "+")
    return Path(tempfile.gettempdir()) / f"orderflow-e2e-{broker}.lock"


@contextlib.contextmanager
def e2e_lock(bootstrap: str, say: Say) -> Iterator[None]:
    """Hold the test sessions' lock, so the run never overlaps one (it waits for it)."""
    path = lock_path(bootstrap)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for {path} (a test session is running; the bench starts when it ends) ...")
            waited = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            say(f"  got {path.name} after {time.monotonic() - waited:.0f}s")
        yield  # closing the file releases the lock


@contextlib.contextmanager
def _environ() -> Iterator[None]:
    """Restore the variables the run sets (database, group prefix, process dir, growth fetch) afterwards."""
    names = ("MONGODB_DATABASE", "KAFKA_GROUP_PREFIX", "ORDERFLOW_PROCS_DIR", "LOG_LEVEL", *growth_env())
    saved = {n: os.environ.get(n) for n in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def git_commit() -> tuple[str, bool]:
    """The checked-out commit and whether the work tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=stack.REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=stack.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


# ------------------------------------------------------------------------------------------ raw limits


async def kafka_raw(bootstrap: str, run: str, seconds: float, say: Say) -> dict[str, dict[str, float]]:
    """Producer and consumer messages/s per payload size, batched aiokafka, on scratch topics (deleted after)."""
    names = {kind: f"bench.scratch.{run}.{kind}" for kind in PAYLOAD_SIZES}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-bench", **client_kwargs())
    await admin.start()
    out: dict[str, dict[str, float]] = {}
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "not leader, retrying" while a new topic's leaders settle
    try:
        new = [NewTopic(n, num_partitions=PARTITIONS, replication_factor=1) for n in names.values()]
        await admin.create_topics(new)
        for kind, name in names.items():
            size = PAYLOAD_SIZES[kind]
            sent, produce_s = await _produce(bootstrap, name, size, seconds)
            got, consume_s = await _consume(bootstrap, name, sent + PARTITIONS)
            out[kind] = {
                "bytes": size,
                "messages": sent,
                "produce_per_s": round(sent / produce_s),
                "consume_per_s": round(got / consume_s),
                "produce_mb_per_s": round(sent * size / produce_s / MB, 1),
            }
            say(
                f"  kafka {size:>5} B: produce {out[kind]['produce_per_s']:>8,.0f} msg/s"
                f"   consume {out[kind]['consume_per_s']:>8,.0f} msg/s  ({sent:,} messages)"
            )
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await admin.delete_topics(list(names.values()))
        await admin.close()
        quiet.setLevel(level)
    return out


async def _produce(bootstrap: str, topic: str, size: int, seconds: float) -> tuple[int, float]:
    """Send `size`-byte messages for `seconds` as fast as one idempotent producer can (linger 5 ms); all acked."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5, **client_kwargs())
    await producer.start()
    payload = (b'{"pad":"' + b"x" * size)[: size - 2] + b'"}'
    keys = [f"web:BENCH-{i:06d}".encode() for i in range(4096)]
    try:
        parts = sorted(await producer.partitions_for(topic))
        for part in parts:  # metadata, leaders and the idempotent producer id first (a new topic's leaders settle)
            for attempt in range(20):
                try:
                    await producer.send_and_wait(topic, payload, key=keys[0], partition=part)
                    break
                except KafkaError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
        futures = []
        started = time.perf_counter()
        deadline = started + seconds
        n = 0
        while time.perf_counter() < deadline:
            for _ in range(500):
                futures.append(await producer.send(topic, payload, key=keys[n % len(keys)]))
                n += 1
        await asyncio.gather(*futures)
        return n, time.perf_counter() - started
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, expected: int) -> tuple[int, float]:
    """Read `expected` messages from the beginning of `topic` (batched getmany); count and seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await bus.partitions(consumer, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        started = time.perf_counter()
        while got < expected and time.perf_counter() - started < 120:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got += sum(len(recs) for recs in batch.values())
        return got, time.perf_counter() - started
    finally:
        await consumer.stop()


def _scratch_doc(i: int) -> dict[str, Any]:
    """A ~1 KB document shaped like the services' (state, inbox, pending)."""
    lines = [{"line_no": n, "sku": f"SKU-{(i + n) % 5000:04d}", "quantity": n, "state": "reserved"} for n in range(8)]
    return {
        "_id": f"order:web:SCRATCH-{i:08d}",
        "v": 1,
        "state": {"status": "received", "order_number": f"SO-{i:08d}", "lines": lines},
        "inbox": [f"orders.submitted:{i % 6}:{i}"],
        "pending": [],
    }


async def store_raw(uri: str, database: str, seconds: float, say: Say) -> dict[str, float]:
    """Sequential insert_one/update_one and bulk insert_many/bulk_write (200 per call) documents/s."""
    client = track.client(uri)
    coll = client[database]["scratch"]
    out: dict[str, float] = {}
    try:
        await coll.insert_one({"_id": "warm-up"})
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            await coll.insert_one(_scratch_doc(n))
            n += 1
        out["insert_one_per_s"] = round(n / (time.perf_counter() - started))
        versions = dict.fromkeys(range(n), 1)
        m, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            i = m % n
            body = _scratch_doc(i) | {"v": versions[i] + 1}
            del body["_id"]
            await coll.update_one({"_id": f"order:web:SCRATCH-{i:08d}", "v": versions[i]}, {"$set": body})
            versions[i] += 1
            m += 1
        out["update_one_per_s"] = round(m / (time.perf_counter() - started))
        k, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            await coll.insert_many([_scratch_doc(1_000_000 + k + j) for j in range(200)], ordered=False)
            k += 200
        out["insert_many_per_s"] = round(k / (time.perf_counter() - started))
        b, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            ops = [
                UpdateOne({"_id": f"order:web:SCRATCH-{1_000_000 + (b + j) % k:08d}"}, {"$set": {"state.n": b + j}})
                for j in range(200)
            ]
            await coll.bulk_write(ops, ordered=False)
            b += 200
        out["bulk_write_per_s"] = round(b / (time.perf_counter() - started))
        say(
            f"  store: insert_one {out['insert_one_per_s']:,.0f}/s   update_one {out['update_one_per_s']:,.0f}/s"
            f"   insert_many {out['insert_many_per_s']:,.0f} docs/s   bulk_write {out['bulk_write_per_s']:,.0f} docs/s"
        )
    finally:
        with contextlib.suppress(PyMongoError):
            await client.drop_database(database)
        await client.close()
    return out


# ------------------------------------------------------------------------------------------ load


def master_data(customers: int, skus: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers (credit limits that never bind), products and ample stock, shaped like orderflow.sample's."""
    custs = [
        c | {"credit_limit": "1000000000000.00"} if c["payment_terms"] == "credit" else c
        for c in sample.customers(customers)
        if c["customer_id"] != "C-9999"
    ]
    prods = sample.products(skus)
    stock = sample.stock([p["sku"] for p in prods], on_hand=100_000_000)
    return custs, prods, stock


async def generator_raw(bootstrap: str, run: str, seconds: float, pool: list[Template], say: Say) -> dict[str, Any]:
    """The load generator's own limit: the mix offered at GENERATOR_RATE/s to a scratch topic exactly as in a
    step (pre-encoded, one batch per partition per tick); sent/s, how far it fell behind, its CPU per order."""
    name = f"bench.scratch.{run}.generator"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-bench", **client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
        async with bus.producer(bootstrap) as producer:
            for attempt in range(20):  # a new topic's leaders settle
                try:
                    parts = sorted(await producer.partitions_for(name))
                    await producer.send_and_wait(name, b"{}", partition=parts[0])
                    break
                except KafkaError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
            total = round(GENERATOR_RATE * seconds)
            encode_cpu = time.process_time()
            messages = bench_load.encode(pool, f"GEN-{run}-", "g", total, parts)
            encode_ms = (time.process_time() - encode_cpu) * 1000 / total
            offered = await bench_load.offer(producer, messages, GENERATOR_RATE, name)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await admin.delete_topics([name])
        await admin.close()
    cpu_ms = offered.cpu_s * 1000 / total
    out = {
        "offered_per_s": GENERATOR_RATE,
        "sent_per_s": round(total / offered.sending_s),
        "behind_max_s": offered.behind_max_s,
        "cpu_ms_per_order": round(cpu_ms, 3),
        "encode_ms_per_order": round(encode_ms, 3),
        "limit_per_s_one_core": round(1000 / cpu_ms) if cpu_ms > 0 else None,
    }
    say(
        f"  load generator: {GENERATOR_RATE}/s offered, sent {out['sent_per_s']:,}/s, at worst "
        f"{offered.behind_max_s * 1000:.0f} ms behind, {cpu_ms:.3f} ms CPU per order sent "
        f"(+{encode_ms:.3f} ms to pre-encode) = up to ~{out['limit_per_s_one_core'] or 0:,}/s on one core"
    )
    return out


@dataclass
class Tracker:
    """Send times per order key and the first time (message timestamp) each status was published."""

    marker: str
    sent: dict[str, float] = field(default_factory=dict)
    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: int = 0

    async def follow(self, bootstrap: str, start: dict[int, int]) -> None:
        """Follow `orders.status` from `start` until cancelled."""
        # cancellation arrives inside the generator's await, whose `finally` then stops its consumer
        async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.2):
            key, status = msg.get("_key"), msg.get("status")
            if isinstance(key, str) and isinstance(status, str) and self.marker in key:
                self.statuses += 1
                self.seen.setdefault(key, {}).setdefault(status, msg["_timestamp"] / 1000)

    def done(self, keys: list[str], status: str = "reserved") -> int:
        """How many of `keys` reached `status`."""
        return sum(1 for k in keys if status in self.seen.get(k, ()))


async def offer(
    producer: AIOKafkaProducer, rate: float, seconds: float, pool: list[Template], tracker: Tracker, tag: str
) -> tuple[list[str], float]:
    """Publish orders open-loop at `rate`/s for `seconds` (late sends catch up); the keys and sending time."""
    total = max(1, round(rate * seconds))
    keys: list[str] = []
    futures = []
    started = time.monotonic()
    n = 0
    while n < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        while n < due:
            tpl = pool[n % len(pool)]
            ref = f"{tracker.marker}{tag}-{n:07d}"
            key = f"{tpl.channel}:{ref}"
            tracker.sent[key] = time.time()
            raw = tpl.raw.replace(PLACEHOLDER, ref.encode())
            futures.append(await producer.send(topics.ORDERS_SUBMITTED, raw, key=key.encode()))
            keys.append(key)
            n += 1
        await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - started)))
    sending = time.monotonic() - started
    await asyncio.gather(*futures)
    return keys, sending


# ------------------------------------------------------------------------------------------ sampling


def _tree(pid: int | None) -> list[Any]:
    if pid is None:
        return []
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def watched(extra: dict[str, int] | None = None) -> dict[str, list[Any]]:
    """The processes whose CPU and memory a step records: each service, the servers, the bench itself, and
    `extra` (name -> pid, e.g. the simulator)."""
    out = {name: _tree(procs.pid_of(name))[:1] for name in procs.SERVICES}
    out |= {name: _tree(pid)[:1] for name, pid in (extra or {}).items()}
    for name, st in stack.status().items():
        tree = _tree(st["pid"])
        out[name] = tree if name == "postgres" else tree[:1]  # PostgreSQL works in its backends
    out["bench"] = [psutil.Process()]
    return out


def cpu_snapshot(groups: dict[str, list[Any]]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) per process of each group; children of the group leader re-read."""
    out: dict[str, dict[int, float]] = {}
    for name, group in groups.items():
        members = _tree(group[0].pid) if name == "postgres" and group else group
        out[name] = {}
        for proc in members:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = proc.cpu_times()
                out[name][proc.pid] = t.user + t.system
    return out


def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds used per group between two snapshots (processes started meanwhile count from zero)."""
    return {
        name: round(sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in procs_.items()), 3)
        for name, procs_ in after.items()
    }


@dataclass
class Samples:
    """Once a second during a step: total lag per service group, RSS per process."""

    times: list[float] = field(default_factory=list)
    lags: list[dict[str, int]] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)

    async def run(self, bootstrap: str, groups: dict[str, list[Any]], started: float) -> None:
        """Sample until cancelled."""
        while True:
            tick = time.monotonic()
            for name, members in groups.items():
                if name == "postgres":
                    continue  # shared memory counted once per backend would mislead
                for proc in members:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        self.peak_rss[name] = max(self.peak_rss.get(name, 0), proc.memory_info().rss)
            try:
                lags = await asyncio.wait_for(lag.total(bootstrap), 5)
            except (KafkaError, OSError, TimeoutError):
                lags = None
            if lags is not None:
                self.times.append(tick - started)
                self.lags.append(lags)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than 3 points)."""
    if len(xs) < 3:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def percentiles(latencies: list[float], total: int) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank) over `total` orders; orders without a value count as infinitely late."""
    values = sorted(latencies)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        rank = max(1, math.ceil(q * total)) - 1
        out[name] = round(values[rank], 4) if rank < len(values) else None
    return out


def pg_row_writes(schemas: list[str]) -> dict[str, int] | None:
    """Rows inserted + updated + deleted per PostgreSQL schema (= FerretDB database); None if unavailable."""
    if stack.ferretdb_backend() != "postgresql":
        return None
    psql = shutil.which("psql")
    if psql is None:
        return None
    names = ",".join(f"'{s}'" for s in schemas)
    query = (
        "select schemaname, sum(n_tup_ins + n_tup_upd + n_tup_del) from pg_stat_user_tables "
        f"where schemaname in ({names}) group by 1"
    )
    cmd = [psql, "-h", stack.HOST, "-p", str(stack.postgres_port()), "-U", stack.PG_SUPERUSER, "-d", stack.PG_DATABASE]
    try:
        res = subprocess.run([*cmd, "-Atc", query], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    counts = dict.fromkeys(schemas, 0)
    for row in res.stdout.splitlines():
        schema, _, n = row.partition("|")
        if schema in counts and n:
            counts[schema] = int(n)
    return counts


async def end_offsets(bootstrap: str, names: tuple[str, ...] = topics.ALL) -> dict[str, int]:
    """The sum over partitions of each topic's end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in await bus.partitions(consumer, t)]
        ends = await consumer.end_offsets(tps)
        out = dict.fromkeys(names, 0)
        for tp, off in ends.items():
            out[tp.topic] += off
        return out
    finally:
        await consumer.stop()


# The topic whose consumption counts one order handled by each service.
PRIMARY: dict[str, str] = {
    "intake": topics.ORDERS_SUBMITTED,
    "review": topics.ORDERS_ACCEPTED,
    "inventory": topics.ORDERS_APPROVED,
    "fulfillment": topics.INVENTORY_ALLOCATIONS,
}


async def committed(bootstrap: str) -> dict[str, dict[str, int]]:
    """Each service group's committed offsets summed per consumed topic (log start where none)."""
    out: dict[str, dict[str, int]] = {g: {} for g in lag.GROUPS}
    for row in await lag.measure(bootstrap):
        off = row.committed if row.committed is not None else row.log_start
        out[row.group][row.topic] = out[row.group].get(row.topic, 0) + off
    return out


def handled_orders(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Orders each service consumed between two snapshots (its committed offsets on its PRIMARY topic)."""
    return {s: after[s].get(t, 0) - before[s].get(t, 0) for s, t in PRIMARY.items()}


@dataclass(frozen=True)
class Snapshot:
    """What a step compares before and after: topic ends, committed offsets, store row writes, and the
    commands each service has sent to the store (its /metrics)."""

    ends: dict[str, int]
    committed: dict[str, dict[str, int]]
    rows: dict[str, int] | None
    commands: dict[str, dict[str, float]] = field(default_factory=dict)
    writes: dict[str, dict[str, float]] = field(default_factory=dict)

    def command_delta(self, before: Snapshot, handled: dict[str, int]) -> dict[str, dict[str, float]]:
        """Store commands per order each service handled since `before`, by command name (a service restarted
        in between, whose counters went back, is left out)."""
        return counter_delta(self.commands, before.commands, handled)

    def write_delta(self, before: Snapshot, handled: dict[str, int]) -> dict[str, dict[str, float]]:
        """Documents written per order each service handled since `before`, by write command (as above)."""
        return counter_delta(self.writes, before.writes, handled)

    def row_delta(self, before: Snapshot) -> dict[str, int] | None:
        """Rows written per service since `before` (None without PostgreSQL statistics)."""
        if self.rows is None or before.rows is None:
            return None
        return {s: n - before.rows.get(s, 0) for s, n in self.rows.items()}


def counter_delta(
    now: dict[str, dict[str, float]], then: dict[str, dict[str, float]], handled: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Per service, what its counters (by command name) grew by per order it handled; a service whose counters
    went back (it restarted in between) or that handled nothing is left out."""
    out: dict[str, dict[str, float]] = {}
    for service, counts in now.items():
        was = then.get(service)
        if was is None or any(counts.get(c, 0) < n for c, n in was.items()) or not handled.get(service):
            continue
        per = {c: round((n - was.get(c, 0)) / handled[service], 2) for c, n in sorted(counts.items())}
        out[service] = {c: v for c, v in per.items() if v}
    return out


StoreCounts = dict[str, dict[str, dict[str, float]]]  # metric family -> service -> command -> count


async def store_counters(services: tuple[str, ...]) -> StoreCounts:
    """Each running service's `orderflow_store_commands_total` and `orderflow_store_writes_total` by command,
    read from its /metrics (services whose port is unknown or that do not answer are left out)."""
    out: StoreCounts = {"orderflow_store_commands": {}, "orderflow_store_writes": {}}
    async with httpx.AsyncClient(timeout=5.0) as client:
        for service in services:
            port = procs.health_port(service)
            if port is None:
                continue
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                if family.name in out:
                    out[family.name][service] = {
                        point.labels["command"]: point.value
                        for point in family.samples
                        if point.name.endswith("_total") and point.labels.get("service") == service
                    }
    return out


def _lag_figures(
    samples: Samples, before: Snapshot, after: Snapshot, offered_end: float, duration: float
) -> dict[str, Any]:
    """Max lag per service, its slope while orders were offered, and whether it grew across the step: the
    median of the last third of the samples over the first third by more than a second of its input (and 50)."""
    topic_msgs = {t: after.ends[t] - before.ends.get(t, 0) for t in after.ends}
    max_lag: dict[str, int] = {}
    lag_grew: dict[str, bool] = {}
    lag_slope: dict[str, float] = {}
    lag_drift: dict[str, float] = {}
    for group, consumed in lag.GROUPS.items():
        series = [(t, s[group]) for t, s in zip(samples.times, samples.lags, strict=True) if group in s]
        max_lag[group] = max((v for _, v in series), default=0)
        window = [(t, v) for t, v in series if 0.1 * offered_end <= t <= offered_end + 0.5]
        per_s = slope([t for t, _ in window], [float(v) for _, v in window])
        in_rate = sum(topic_msgs.get(t, 0) for t in consumed) / duration
        grown = bench_load.drift([(t, float(v)) for t, v in window], 0.1 * offered_end, offered_end + 0.5)
        lag_slope[group] = round(per_s, 1)
        lag_drift[group] = round(grown, 1)
        lag_grew[group] = grown > max(in_rate, 50)
    return {
        "max_lag": max_lag,
        "lag_slope_per_s": lag_slope,
        "lag_drift": lag_drift,
        "lag_grew": lag_grew,
        "topic_messages": {t: n for t, n in topic_msgs.items() if n},
    }


def _resource_figures(
    cpu: dict[str, float], handled: dict[str, int], reserved: int, seconds: float, samples: Samples
) -> dict[str, Any]:
    """CPU per order (a service per order it handled, the servers and the bench per reserved order), RSS."""
    per_order = {k: round(v * 1000 / max(1, handled.get(k, reserved)), 2) for k, v in cpu.items()}
    return {
        "handled": handled,
        "handled_per_s": {s: round(n / seconds, 1) for s, n in handled.items()},
        "cpu_s": cpu,
        "cpu_ms_per_order": per_order,
        "cpu_share": {k: round(v / seconds, 2) for k, v in cpu.items()},
        "peak_rss_mb": {k: round(v / MB, 1) for k, v in samples.peak_rss.items()},
    }


# ------------------------------------------------------------------------------------------ the run


class Bench:
    """One benchmark run against the running servers."""

    def __init__(self, bootstrap: str, uri: str, plan: Plan, say: Say) -> None:
        self.bootstrap, self.uri, self.plan, self.say = bootstrap, uri, plan, say
        self.run_id = uuid.uuid4().hex[:8]
        self.database = f"bench_{self.run_id}"
        self.procs_dir = tempfile.mkdtemp(prefix=f"orderflow-bench-{self.run_id}-")
        self.generation = 0
        self.follower = bench_load.Follower(marker=f"BENCH-{self.run_id}-")
        self.intended: dict[str, float] = {}
        self.expect: dict[str, str] = {}
        self.simulator: tuple[asyncio.Event, asyncio.Task[None]] | None = None
        self.simulator_proc: subprocess.Popen[bytes] | None = None
        self.custs, self.prods, self.stock = master_data(plan.customers, plan.skus)
        self.pool: list[Template] = bench_load.mix_pool(4000, [c["customer_id"] for c in self.custs], self.prods)
        self.tracker_task: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        self.restart_needed = False  # the last step left a backlog behind

    def env(self) -> dict[str, str]:
        """The environment of this run's service processes."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MONGODB_URI": self.uri,
            "MONGODB_DATABASE": self.database,
            "KAFKA_GROUP_PREFIX": f"bench-{self.run_id}-{self.generation}-",
            "ORDERFLOW_PROCS_DIR": self.procs_dir,
            "LOG_LEVEL": self.plan.log_level,
        } | (growth_env() if self.plan.mode == "growth" else {})

    async def start_services(self) -> None:
        """Fresh consumer groups at the end of every topic, then the four services (and the simulator, in
        its own process so that its CPU is not the load generator's)."""
        await self.stop_services(graceful=False)
        self.generation += 1
        env = self.env()
        os.environ.update(env)
        await lag.start_at_end(self.bootstrap)
        pids = await asyncio.to_thread(procs.up, 1, env)
        if self.plan.shipping:
            await Simulator(self.bootstrap).skip_backlog()
            cli = Path(sys.executable).with_name("orderflow")
            log = open(Path(self.procs_dir) / f"simulator-{self.generation}.log", "wb")  # noqa: SIM115
            with log:
                self.simulator_proc = subprocess.Popen(
                    [str(cli), "simulate", "--exception-rate", "0"], env=os.environ | env, stdout=log, stderr=log
                )
        listed = ", ".join(f"{name} {ids[0]}" for name, ids in pids.items())
        sim = f", simulator {self.simulator_proc.pid}" if self.simulator_proc else ""
        self.say(f"  services up, consumer groups {env['KAFKA_GROUP_PREFIX']}*, pids: {listed}{sim}")

    def stop_simulator(self) -> None:
        """Stop the simulator process, if any (SIGTERM, then SIGKILL after 5 s)."""
        proc, self.simulator_proc = self.simulator_proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    async def stop_services(self, graceful: bool = True) -> None:
        """Stop the simulator and the services: SIGTERM (they finish their batch), or SIGKILL when their
        backlog is abandoned anyway (a finishing batch of a saturated service can take many seconds)."""
        if self.simulator is not None:
            stop, task = self.simulator
            stop.set()
            with contextlib.suppress(Exception):
                await task
            self.simulator = None
        await asyncio.to_thread(self.stop_simulator)
        if graceful:
            await asyncio.to_thread(procs.down)
        else:
            for name in procs.SERVICES:
                for replica in procs.replicas(name):
                    await asyncio.to_thread(procs.kill, name, replica)

    def check_alive(self) -> None:
        """Fail with the log tail when a service process died."""
        for name in procs.SERVICES:
            if procs.pid_of(name) is None:
                raise RuntimeError(f"service {name} is not running; log tail:\n{procs.log_tail(name)}")

    async def drain(self, groups: tuple[str, ...], timeout: float) -> bool:
        """Wait until the given groups have no lag; a progress line every 5 s."""
        deadline, last = time.monotonic() + timeout, 0.0
        while time.monotonic() < deadline:
            try:
                lags = await lag.total(self.bootstrap, {g: lag.GROUPS[g] for g in groups})
            except KafkaError:
                lags = {g: -1 for g in groups}
            if not any(lags.values()):
                return True
            self.check_alive()
            if time.monotonic() - last > 5:
                self.say("    lag " + ", ".join(f"{g} {n}" for g, n in lags.items()))
                last = time.monotonic()
            await asyncio.sleep(1.0)
        return False

    async def load_master_data(self) -> dict[str, Any]:
        """Publish customers, products and stock counts; wait until review and inventory have them."""
        custs, prods, stock = self.custs, self.prods, self.stock
        started = time.monotonic()
        async with bus.producer(self.bootstrap) as p:
            await bus.publish(p, topics.MASTERDATA_CUSTOMERS, [(c["customer_id"], c) for c in custs])
            await bus.publish(p, topics.MASTERDATA_PRODUCTS, [(x["sku"], x) for x in prods])
            await bus.publish(p, topics.INVENTORY_MOVEMENTS, [(s["sku"], s) for s in stock])
        if not await self.drain(("review", "inventory"), 300):
            raise RuntimeError("review/inventory did not consume the master data within 300 s")
        took = time.monotonic() - started
        self.say(f"  {len(custs)} customers, {len(prods)} products, {len(stock)} stock counts loaded in {took:.1f}s")
        return {"customers": len(custs), "products": len(prods), "stock_counts": len(stock), "seconds": round(took, 1)}

    async def send(
        self, producer: AIOKafkaProducer, pool: list[Template], rate: float, count: int, tag: str
    ) -> tuple[list[str], bench_load.Offered]:
        """Encode `count` orders of `pool` first, then offer them at `rate`/s; their keys and the offer."""
        parts = sorted(await producer.partitions_for(topics.ORDERS_SUBMITTED))
        messages = bench_load.encode(pool, self.follower.marker, tag, count, parts)
        self.expect.update((m.key, m.expect) for m in messages)
        offered = await bench_load.offer(producer, messages, rate)
        self.intended.update(offered.intended)
        return [m.key for m in messages], offered

    async def settle(self, keys: list[str], timeout: float, what: str) -> None:
        """Wait until every one of `keys` reached its expected status; fail after `timeout` seconds."""

        async def pending() -> str | None:
            done = self.follower.settled(keys, self.expect)
            return None if done >= len(keys) else f"{done}/{len(keys)} orders settled"

        await self._until(pending, timeout, what)

    async def drained(self, timeout: float, what: str) -> None:
        """Wait until no service group has unconsumed records (the work behind the settled statuses, e.g.
        fulfillment's, is done too); fail after `timeout` seconds."""

        async def pending() -> str | None:
            lags = await lag.total(self.bootstrap)
            return f"the services still lag {lags}" if sum(lags.values()) else None

        await self._until(pending, timeout, what)

    async def _until(self, pending: Callable[[], Awaitable[str | None]], timeout: float, what: str) -> None:
        """Poll `pending` (None when done, else how far it is) every 0.25 s, saying so every 10 s; fail after
        `timeout` seconds, or when a service process has died."""
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while (status := await pending()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {status} within {timeout:.0f} s")
            self.check_alive()
            if time.monotonic() - last > 10:
                self.say(f"    {what}: {status}")
                last = time.monotonic()
            await asyncio.sleep(0.25)

    async def warm_up(self, producer: AIOKafkaProducer) -> None:
        """A few orders through the whole pipeline: the services have joined their groups and work."""
        spread = [t for t in self.pool if t.expect == "reserved"]
        keys, _ = await self.send(producer, spread, 10, WARMUP_ORDERS, f"w{self.generation}")
        await self.settle(keys, 120, "warm-up")

    async def warm_at_load(self, producer: AIOKafkaProducer, rate: int, pool: list[Template] | None) -> None:
        """WARMUP_LOAD_S seconds at `rate` before a step on fresh services or servers, not measured: their first
        seconds under load (caches, batch sizes, the store's first writes of a new database) are not the step's."""
        self.say(f"     warming up at {rate}/s for {WARMUP_LOAD_S:.0f}s (not measured)")
        count = max(1, round(rate * WARMUP_LOAD_S))
        keys, _ = await self.send(producer, pool or self.pool, rate, count, f"wl{self.generation}-{rate}")
        await self.settle(keys, 60 + count / 10, "warm-up at load")  # its backlog is gone before the step starts

    async def snapshot(self) -> Snapshot:
        """Topic end offsets, the services' committed offsets and the store's row writes, now."""
        schemas = [f"{self.database}_{s}" for s in procs.SERVICES]
        rows = await asyncio.to_thread(pg_row_writes, schemas)
        counts = await store_counters(procs.SERVICES)
        return Snapshot(
            await end_offsets(self.bootstrap),
            await committed(self.bootstrap),
            {s: rows[f"{self.database}_{s}"] for s in procs.SERVICES} if rows is not None else None,
            counts["orderflow_store_commands"],
            counts["orderflow_store_writes"],
        )

    def extra_processes(self) -> dict[str, int]:
        """Processes of this run besides the services and servers (the simulator)."""
        return {"simulator": self.simulator_proc.pid} if self.simulator_proc is not None else {}

    async def step(
        self, producer: AIOKafkaProducer, index: int, rate: int, pool: list[Template] | None = None
    ) -> dict[str, Any]:
        """Offer `rate` orders/s of `pool` (default: the mix) for the step time; what the system did with them."""
        plan = self.plan
        parts = sorted(await producer.partitions_for(topics.ORDERS_SUBMITTED))
        count = max(1, round(rate * plan.step_seconds))
        messages = bench_load.encode(pool or self.pool, self.follower.marker, f"s{index:02d}", count, parts)
        self.expect.update((m.key, m.expect) for m in messages)
        keys = [m.key for m in messages]
        groups = watched(self.extra_processes())
        before = await self.snapshot()
        cpu_before = cpu_snapshot(groups)
        started = time.monotonic()
        samples = Samples()
        sampler = asyncio.create_task(samples.run(self.bootstrap, groups, started))
        offered = await bench_load.offer(producer, messages, rate)
        self.intended.update(offered.intended)
        offered_end = time.monotonic() - started
        deadline = time.monotonic() + plan.grace_seconds
        while self.follower.settled(keys, self.expect) < len(keys) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        finished = time.monotonic() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        cpu = cpu_delta(cpu_before, cpu_snapshot(groups))
        handled = handled_orders(before.committed, await committed(self.bootstrap))
        self.check_alive()
        settled = self.follower.settled(keys, self.expect) == len(keys)
        drained = settled and await self.drain(tuple(lag.GROUPS), 15)
        if drained:
            await asyncio.sleep(1.5)  # PostgreSQL publishes its table statistics about once a second
        after = await self.snapshot()
        fig = self._latency(rate, keys, offered)
        fig.update(_lag_figures(samples, before, after, offered_end, plan.step_seconds))
        p99 = fig["latency_s"]["reserved"]["p99"]
        fig["sustained"] = (
            p99 is not None
            and p99 < TARGET_P99_S
            and not any(fig["lag_grew"].values())
            and fig["latency_drift_s"] <= LATENCY_DRIFT_S
        )
        fig["drained_after"] = drained
        fig["measured_seconds"] = round(finished, 1)
        fig.update(_resource_figures(cpu, handled, fig["reserved"], finished, samples))
        rows_handled = handled_orders(before.committed, after.committed)
        fig["row_writes"] = after.row_delta(before)
        fig["row_writes_per_order"] = (
            {s: round(n / max(1, rows_handled[s]), 2) for s, n in fig["row_writes"].items()}
            if fig["row_writes"]
            else None
        )
        fig["store_commands_per_order"] = after.command_delta(before, rows_handled)
        fig["store_writes_per_order"] = after.write_delta(before, rows_handled)
        fig["pids"] = {name: [p.pid for p in members][:1] for name, members in groups.items()}
        return fig

    def _latency(self, rate: int, keys: list[str], offered: bench_load.Offered) -> dict[str, Any]:
        """Offered, sent and achieved rates, the latency percentiles from each order's intended send time (the
        reserved stage over the orders meant to reach it) and the latency drift across the step."""
        seen, intended = self.follower.seen, self.intended
        reserving = [k for k in keys if self.expect.get(k) == "reserved"]
        latency = {}
        for stage in STAGES:
            among = reserving if stage == "reserved" else keys
            values = [v for _, v in bench_load.latencies(among, intended, seen, stage)]
            latency[stage] = {**percentiles(values, len(among)), "done": len(values)}
        points = bench_load.latencies(reserving, intended, seen, "reserved")
        start = min(intended[k] for k in keys)
        step_drift = bench_load.drift(points, start + 0.1 * self.plan.step_seconds, start + self.plan.step_seconds)
        reserved_at = [seen[k]["reserved"] for k in reserving if "reserved" in seen.get(k, ())]
        span = (max(reserved_at) - start) if reserved_at else 0.0
        return {
            "offered_per_s": rate,
            "seconds": self.plan.step_seconds,
            "orders": len(keys),
            "reserving_orders": len(reserving),
            "settled": self.follower.settled(keys, self.expect),
            "sent_per_s": round(len(keys) / offered.sending_s, 1) if offered.sending_s > 0 else None,
            "generator_behind_max_s": offered.behind_max_s,
            "generator_cpu_ms_per_order": round(offered.cpu_s * 1000 / len(keys), 3),
            "reserved": len(reserved_at),
            "achieved_per_s": round(len(reserved_at) / span, 1) if span > 0 else 0.0,
            "latency_s": latency,
            "latency_drift_s": round(step_drift, 3),
        }

    def _next_rate(self, search: bench_load.Search | None, fixed: list[int]) -> int | None:
        """The search's next rate (or the next fixed one), None when done or when it would end past the budget."""
        plan = self.plan
        if plan.budget_seconds:
            left = plan.budget_seconds - (time.monotonic() - self.started)
            if left < plan.step_seconds + plan.grace_seconds + STEP_OVERHEAD_S:
                return None
        if search is None:
            return fixed.pop(0) if fixed else None
        return search.next_rate()

    async def steps(
        self, producer: AIOKafkaProducer, rates: tuple[int, ...], first: int = 0, pool: list[Template] | None = None
    ) -> list[dict[str, Any]]:
        """Steps at the fixed `rates`, or (none given) at the rates the bisection search picks; fresh services
        after a step that left a backlog."""
        plan, say = self.plan, self.say
        search = None if rates else bench_load.Search(start=plan.search_start, max_steps=plan.max_steps)
        fixed = list(rates)
        out: list[dict[str, Any]] = []
        restart = False
        while (rate := self._next_rate(search, fixed)) is not None:
            if restart:
                say("  the last step left a backlog: fresh services and consumer groups")
                await self.start_services()
                await self.warm_up(producer)  # else the groups' joining would count as the next step's latency
            if (restart or not out) and not plan.quick:
                await self.warm_at_load(producer, rate, pool)
            fig = await self.step(producer, first + len(out), rate, pool)
            fig["fresh_services"] = restart
            fig["profile"] = "hot" if pool is not None and pool is not self.pool else "mix"
            out.append(fig)
            if search is not None:
                search.record(rate, fig["sustained"])
            say(step_line(fig))
            restart = not fig["drained_after"]
        self.restart_needed = restart
        return out

    async def run(self) -> dict[str, Any]:
        """Raw limits (Kafka, store, the load generator), master data, then the mode's steps; the result."""
        plan, say = self.plan, self.say
        self.started = time.monotonic()
        result: dict[str, Any] = {"run": self.run_id, "database": self.database}
        await ensure_topics(self.bootstrap)
        say(f"[1/4] raw Kafka limits and the load generator's ({plan.raw_seconds:g}s each, scratch topics)")
        result["raw_kafka"] = await kafka_raw(self.bootstrap, self.run_id, plan.raw_seconds, say)
        result["generator"] = await generator_raw(
            self.bootstrap, self.run_id, max(2.0, plan.raw_seconds), self.pool, say
        )
        say(f"[2/4] raw document-store limits ({plan.raw_seconds:g}s per kind, scratch database)")
        result["raw_store"] = await store_raw(self.uri, f"{self.database}_scratch", plan.raw_seconds, say)
        say("[3/4] services and master data")
        await self.start_services()
        follower_start = await bus.end_offsets(self.bootstrap, topics.ORDERS_STATUS)
        self.tracker_task = asyncio.create_task(self.follower.follow(self.bootstrap, follower_start))
        result["master_data"] = await self.load_master_data()
        async with bus.producer(self.bootstrap) as producer:
            await self.warm_up(producer)
            if plan.mode == "growth":
                say(
                    f"[4/4] growth: one reservation, one approval and one shortage against "
                    f"{', '.join(map(str, plan.levels))} open"
                )
                result["growth"] = await self.growth(producer)
                result["steps"] = []
            else:
                what = ", ".join(map(str, plan.rates)) + " orders/s" if plan.rates else "bisection search"
                say(f"[4/4] offered load ({what}), {plan.step_seconds:.0f}s steps; the mix: {mix_line(self.pool)}")
                hot_rates_given = plan.mode == "hot" and plan.rates  # compare at these, no search
                result["steps"] = [] if hot_rates_given else await self.steps(producer, plan.rates)
                if plan.mode == "hot":
                    result["hot"] = await self.hot(producer, result["steps"])
        self.tracker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.tracker_task
        self.tracker_task = None
        await self.stop_services(graceful=not self.restart_needed)  # an abandoned backlog: no need to wait
        result["per_order"] = per_order(result["steps"])
        result["summary"] = summary(result)
        return result

    async def hot(self, producer: AIOKafkaProducer, searched: list[dict[str, Any]]) -> dict[str, Any]:
        """The mix and the hot profile (all orders on 3 SKUs and 3 customers) at the same offered rates - 30/s
        and the sustained one (or the rates given) - each pair on fresh services; p99 submitted->reserved."""
        plan = self.plan
        held = [s["offered_per_s"] for s in searched if s["sustained"]]
        rates = plan.rates or tuple(dict.fromkeys((HOT_LOW_RATE, max(held, default=HOT_LOW_RATE))))
        self.say(f"  hot profile vs the mix at {', '.join(map(str, rates))} orders/s")
        hot_pool = bench_load.hot_pool(4000, HOT_CUSTOMERS, [p for p in self.prods if p["sku"] in HOT_SKUS])
        rows = []
        for rate in rates:
            pair = {}
            for profile, pool in (("mix", self.pool), ("hot", hot_pool)):
                self.say(f"  {profile} profile at {rate}/s on fresh services")
                await self.start_services()
                await self.warm_up(producer)
                [fig] = await self.steps(producer, (rate,), first=len(searched), pool=pool)
                searched.append(fig)
                pair[profile] = fig["latency_s"]["reserved"]["p99"]
            ratio = pair["hot"] / pair["mix"] if pair["hot"] is not None and pair["mix"] else None
            rows.append({"offered_per_s": rate, "mix_p99_s": pair["mix"], "hot_p99_s": pair["hot"], "ratio": ratio})
            self.say(f"  hot vs mix at {rate}/s: p99 {_ms(pair['hot']).strip()} vs {_ms(pair['mix']).strip()} ms")
        return {"customers": HOT_CUSTOMERS, "skus": HOT_SKUS, "rows": rows, "target_ratio": 2.0}

    async def growth(self, producer: AIOKafkaProducer) -> dict[str, Any]:
        """Open work seeded through the services (no simulator: what is reserved stays reserved), then
        GROWTH_PROBES single orders timed from outside at each level (status timestamps; the median per level
        and the ratio of the largest median to the smallest). Orders of one customer on one SKU, left reserved:
        approval = received -> approved, reservation = approved -> reserved. Then shortage orders on one SKU,
        left awaiting the customer's decision: shortage = approved -> awaiting_customer_decision."""
        prods = [p for p in self.prods if p["sku"] == GROWTH_SKU]
        pool = bench_load.hot_pool(200, (GROWTH_CUSTOMER,), prods, seed=17)
        stages = {"approval": ("received", "approved"), "reservation": ("approved", "reserved")}
        rows = await self._grown(producer, pool, stages, f"open orders of {GROWTH_CUSTOMER} on {GROWTH_SKU}", "g")
        short_pool = bench_load.mix_pool(
            200, [c["customer_id"] for c in self.custs], self.prods, bench_load.Mix(shortage=1.0, hot=0.0, credit=0.0)
        )
        short = {"shortage": ("approved", bench_load.SHORT_STATUS)}
        short_rows = await self._grown(producer, short_pool, short, f"undecided orders on {bench_load.SHORT_SKU}", "s")

        def ratio(rows: list[dict[str, Any]], name: str) -> float | None:
            values = [float(r[name]) for r in rows]
            return round(max(values) / min(values), 2) if values and min(values) > 0 else None

        return {
            "sku": GROWTH_SKU,
            "customer": GROWTH_CUSTOMER,
            "rows": rows,
            "reservation_ratio": ratio(rows, "reservation_s"),
            "approval_ratio": ratio(rows, "approval_s"),
            "shortage_sku": bench_load.SHORT_SKU,
            "shortage_rows": short_rows,
            "shortage_ratio": ratio(short_rows, "shortage_s"),
            "target_ratio": 1.5,
        }

    async def _grown(
        self, producer: AIOKafkaProducer, pool: list[Template], stages: dict[str, tuple[str, str]], what: str, tag: str
    ) -> list[dict[str, Any]]:
        """Seed `pool`'s orders up to each growth level, then time GROWTH_PROBES single orders at each: per stage
        name, the time from its first status to its second (median and samples, s)."""
        open_, rows = 0, []
        for level in self.plan.levels:
            seed = level - open_
            took = time.monotonic()
            keys, _ = await self.send(producer, pool, 2000, seed, f"{tag}{level}")
            await self.settle(keys, 60 + seed / 5, f"seeding {level} {what}")
            open_ = level
            self.say(f"  {level} {what} (seeded in {time.monotonic() - took:.0f}s)")
            samples: dict[str, list[float]] = {name: [] for name in stages}
            for n in range(GROWTH_PROBES):
                await self.drained(120 + seed / 10, f"probe at {level}")  # a probe times one order, not a backlog
                [key], _ = await self.send(producer, pool, 10, 1, f"{tag}p{level}-{n}")
                await self.settle([key], 60, f"probe at {level}")
                seen = self.follower.seen[key]
                for name, (start, end) in stages.items():
                    samples[name].append(seen[end] - seen[start])
                open_ += 1
            row: dict[str, Any] = {"open": level}
            for name, values in samples.items():
                row[f"{name}_s"] = round(statistics.median(values), 4)
                row[f"{name}_samples_s"] = [round(v, 4) for v in values]
            rows.append(row)
            self.say("  median " + ", ".join(f"{name} {row[f'{name}_s'] * 1000:.0f} ms" for name in stages))
        return rows

    async def cleanup(self) -> None:
        """Drop the run's databases (the scratch one is gone already)."""
        client = track.client(self.uri)
        try:
            for s in procs.SERVICES:
                with contextlib.suppress(PyMongoError):
                    await client.drop_database(f"{self.database}_{s}")
        finally:
            await client.close()


# ------------------------------------------------------------------------------------------ figures


# Kafka messages of one approved and reserved order by design (no simulator): the submission, three
# statuses (received, approved, reserved), intake's accepted + shipping, review's approved, inventory's
# allocation, fulfillment's opened shipment.
DESIGN_MESSAGES: dict[str, float] = {
    topics.ORDERS_SUBMITTED: 1,
    topics.ORDERS_STATUS: 3,
    topics.ORDERS_ACCEPTED: 1,
    topics.ORDERS_SHIPPING: 1,
    topics.ORDERS_APPROVED: 1,
    topics.INVENTORY_ALLOCATIONS: 1,
    topics.FULFILLMENT_SHIPMENTS: 1,
}


def per_order(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Kafka messages per order (end offsets of the fastest complete step, else the design's count) and the
    store's commands and document writes per order in that step (the services' counters; PostgreSQL's row
    writes when it is the backend)."""
    complete = [s for s in steps if s.get("settled", s["reserved"]) == s["orders"] and s["drained_after"]]
    ref = max(complete, key=lambda s: s["offered_per_s"]) if complete else None
    if ref is not None:
        orders = max(1, ref["orders"])
        produced = {t: round(n / orders, 2) for t, n in ref["topic_messages"].items()}
        source = f"measured: end offsets in the step at {ref['offered_per_s']}/s"
    else:
        produced = dict(DESIGN_MESSAGES)
        source = "design (no step completed, and a saturated step's counts are partial)"
    consumers = {t: sum(t in names for names in lag.GROUPS.values()) for t in topics.ALL}
    return {
        "source": source,
        "kafka_produced_by_topic": produced,
        "kafka_produced": round(sum(produced.values()), 2),
        "kafka_consumed_by_services": round(sum(n * consumers.get(t, 0) for t, n in produced.items()), 2),
        "store_row_writes_measured": ref["row_writes_per_order"] if ref is not None else None,
        "store_commands_measured": ref.get("store_commands_per_order") if ref is not None else None,
        "store_writes_measured": ref.get("store_writes_per_order") if ref is not None else None,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Sustained throughput (the highest rate of the mix that held) and how much of the raw limits it uses."""
    steps = result["steps"]
    ok = [s["offered_per_s"] for s in steps if s["sustained"] and s.get("profile", "mix") == "mix"]
    sustained = max(ok) if ok else 0
    peak = max((s["achieved_per_s"] for s in steps), default=0.0)
    po = result["per_order"]
    kafka = result["raw_kafka"]["status"]
    store = result["raw_store"]
    measured = po.get("store_writes_measured")
    writes = counted(measured) if measured else None

    def ratios(rate: float) -> dict[str, float | None]:
        return {
            "kafka_produce": round(rate * po["kafka_produced"] / kafka["produce_per_s"], 4),
            "kafka_consume": round(rate * po["kafka_consumed_by_services"] / kafka["consume_per_s"], 4),
            "store_single": round(rate * writes / store["update_one_per_s"], 4) if writes is not None else None,
            "store_bulk": round(rate * writes / store["bulk_write_per_s"], 4) if writes is not None else None,
        }

    return {
        "sustained_orders_per_s": sustained,
        "criterion": (
            f"p99 submitted->reserved from the intended send < {TARGET_P99_S:.0f} s, no service's lag grows and"
            f" median latency rises < {LATENCY_DRIFT_S * 1000:.0f} ms across the step"
        ),
        "peak_achieved_orders_per_s": peak,
        "ratios_at_sustained": ratios(sustained),
        "ratios_at_peak": ratios(peak),
    }


def _ms(v: float | None) -> str:
    return "   >grace" if v is None else f"{v * 1000:>9,.0f}"


def counted(counts: dict[str, dict[str, float]]) -> float:
    """The sum of per-order counts by service and command."""
    return sum(v for per in counts.values() for v in per.values())


def per_service_line(counts: dict[str, dict[str, float]]) -> str:
    """`total: service n (command n, ...); ...` of per-order counts by service and command."""
    return f"{counted(counts):.2f}: " + "; ".join(
        f"{svc} {sum(per.values()):.2f} (" + ", ".join(f"{c} {v}" for c, v in per.items()) + ")"
        for svc, per in counts.items()
    )


def mix_line(pool: list[Template]) -> str:
    """The shares of the pool's order kinds, e.g. `5% shortage, 10% hot, 85% spread`."""
    kinds: dict[str, int] = {}
    for t in pool:
        kinds[t.kind] = kinds.get(t.kind, 0) + 1
    return ", ".join(f"{n / len(pool):.0%} {kind}" for kind, n in sorted(kinds.items())) if pool else "empty"


SYSTEM = (*procs.SERVICES, "kafka", "ferretdb", "postgres")  # what an order costs the system (not the bench)


def cpu_sum(step: dict[str, Any]) -> float:
    """CPU ms per order summed over the services and servers (the bench and the simulator are outside)."""
    return round(sum(float(step["cpu_ms_per_order"].get(n, 0.0)) for n in SYSTEM), 2)


def step_line(s: dict[str, Any]) -> str:
    """One progress line for a finished step."""
    lat = s["latency_s"]["reserved"]
    grew = [g for g, v in s["lag_grew"].items() if v]
    profile = "" if s.get("profile", "mix") == "mix" else f" ({s['profile']})"
    return (
        f"  {s['offered_per_s']:>5}/s offered{profile}: sent {s['sent_per_s']:,.0f}/s, achieved "
        f"{s['achieved_per_s']:,.1f}/s, reserved {s['reserved']}/{s['reserving_orders']}, settled "
        f"{s['settled']}/{s['orders']}, submit->reserved p50 {_ms(lat['p50']).strip()} ms "
        f"p99 {_ms(lat['p99']).strip()} ms (from intended send), latency drift {s['latency_drift_s'] * 1000:+,.0f} ms, "
        f"max lag {max(s['max_lag'].values(), default=0)}, CPU {cpu_sum(s):.1f} ms/order"
        + (f", lag grew: {', '.join(grew)}" if grew else "")
        + (" -> held" if s["sustained"] else " -> failed")
    )


def report(result: dict[str, Any]) -> list[str]:
    """The printed tables."""
    dirty = " (uncommitted changes)" if result["dirty"] else ""
    out = [f"orderflow bench {result['started_at']} ({result['mode']})  commit {result['commit'][:10]}{dirty}"]
    out += ["", "Raw limits (same servers, same run)"]
    for kind, k in result["raw_kafka"].items():
        out.append(
            f"  kafka {kind:<9} {k['bytes']:>5} B   produce {k['produce_per_s']:>9,.0f} msg/s "
            f"({k['produce_mb_per_s']:.1f} MB/s)   consume {k['consume_per_s']:>9,.0f} msg/s"
        )
    g = result["generator"]
    out.append(
        f"  load generator (bench process) {g['offered_per_s']:>5}/s offered: sent {g['sent_per_s']:,}/s, "
        f"at worst {g['behind_max_s'] * 1000:.0f} ms behind, {g['cpu_ms_per_order']:.3f} ms CPU/order "
        f"(+{g['encode_ms_per_order']:.3f} ms pre-encoding): ~{g['limit_per_s_one_core'] or 0:,}/s per core"
    )
    st = result["raw_store"]
    out.append(
        f"  store single-document: insert_one {st['insert_one_per_s']:>7,.0f}/s   "
        f"update_one {st['update_one_per_s']:>7,.0f}/s"
    )
    out.append(
        f"  store bulk (200/call): insert_many {st['insert_many_per_s']:>6,.0f} docs/s   "
        f"bulk_write {st['bulk_write_per_s']:>6,.0f} docs/s"
    )
    out += [
        "",
        "End to end (latency in ms from each order's intended send time; >grace = some orders never got there;"
        " reserved over the orders meant to reserve)",
    ]
    head = f"  {'offered':>7} {'sent':>7} {'achieved':>8} {'reserved':>13}"
    for stage in STAGES:
        head += f" | {stage + ' p50':>13}{'p95':>9}{'p99':>9}"
    out.append(head + " | max lag in/rv/iv/ff        grew  ok")
    for s in result["steps"]:
        done = f"{s['reserved']}/{s['orders']}"
        done = f"{s['reserved']}/{s['reserving_orders']}"
        row = f"  {s['offered_per_s']:>7} {s['sent_per_s']:>7,.0f} {s['achieved_per_s']:>8,.1f} {done:>13}"
        for stage in STAGES:
            lat = s["latency_s"][stage]
            row += f" | {_ms(lat['p50']):>13}{_ms(lat['p95'])}{_ms(lat['p99'])}"
        lags = "/".join(str(s["max_lag"].get(g, 0)) for g in lag.GROUPS)
        grew = "yes" if any(s["lag_grew"].values()) else "no"
        out.append(row + f" | {lags:<25} {grew:>4}  {'yes' if s['sustained'] else 'no'}")
    out += [
        "",
        "Orders handled per service (/s; committed offsets on its input: submitted, accepted, approved, allocations)",
    ]
    out.append(f"  {'offered':>7} " + "".join(f"{n:>13}" for n in procs.SERVICES))
    for s in result["steps"]:
        out.append(f"  {s['offered_per_s']:>7} " + "".join(f"{s['handled_per_s'][n]:>13,.1f}" for n in procs.SERVICES))
    names = [*SYSTEM, "simulator", "bench"]
    out += [
        "",
        "CPU ms per order (services: per order handled; servers, simulator, bench: per reserved order) and cores"
        " busy; sum = services + Kafka + FerretDB + PostgreSQL",
    ]
    out.append(f"  {'offered':>7} " + "".join(f"{n:>17}" for n in names) + f"{'sum':>10}")
    for s in result["steps"]:
        cells = "".join(f"{s['cpu_ms_per_order'].get(n, 0):>10.2f} ({s['cpu_share'].get(n, 0):.2f})" for n in names)
        out.append(f"  {s['offered_per_s']:>7} {cells}{cpu_sum(s):>10.2f}")
    rss_names = [n for n in names if n not in ("postgres", "simulator")]
    out += ["", "Peak RSS (MB) per process"]
    out.append(f"  {'offered':>7} " + "".join(f"{n:>12}" for n in rss_names))
    for s in result["steps"]:
        out.append(f"  {s['offered_per_s']:>7} " + "".join(f"{s['peak_rss_mb'].get(n, 0):>12,.0f}" for n in rss_names))
    po, sm = result["per_order"], result["summary"]
    out += ["", f"Per order ({po['source']})"]
    out.append(
        f"  Kafka messages produced {po['kafka_produced']} ("
        + ", ".join(f"{t} {n}" for t, n in po["kafka_produced_by_topic"].items())
        + f"); consumed by services {po['kafka_consumed_by_services']}"
    )
    if po["store_row_writes_measured"]:
        m = po["store_row_writes_measured"]
        out.append(
            f"  PostgreSQL row writes measured {sum(m.values()):.1f}: " + ", ".join(f"{k} {v}" for k, v in m.items())
        )
    measured = (("commands (round trips)", "store_commands_measured"), ("document writes", "store_writes_measured"))
    for what, key in measured:
        if counts := po.get(key):
            out.append(f"  store {what} measured {per_service_line(counts)}")
    out += report_modes(result)
    out += sustained_lines(result["plan"].get("mode", "throughput"), sm)
    out.append(f"\nresults: {result['path']}")
    return out


def sustained_lines(mode: str, sm: dict[str, Any]) -> list[str]:
    """The sustained-rate summary; none for a --growth run, which offers no load steps to sustain."""
    if mode == "growth":
        return []
    out = ["", f"Sustained throughput: {sm['sustained_orders_per_s']} orders/s ({sm['criterion']})"]
    out.append(f"  peak achieved: {sm['peak_achieved_orders_per_s']} orders/s")
    for label, key in (("sustained", "ratios_at_sustained"), ("peak", "ratios_at_peak")):
        r = sm[key]
        store = (
            f"; store document writes vs single-document {r['store_single']:.1%}, vs bulk {r['store_bulk']:.1%}"
            if r.get("store_single") is not None
            else "; store writes not measured"
        )
        out.append(
            f"  share of the raw limits used at {label}: Kafka produce {r['kafka_produce']:.1%}, "
            f"consume {r['kafka_consume']:.1%}{store}"
        )
    out.append(f"sustained {sm['sustained_orders_per_s']} orders/s")
    return out


def report_modes(result: dict[str, Any]) -> list[str]:
    """The --hot comparison and the --growth timings, when the run made them."""
    out: list[str] = []
    if "hot" in result:
        hot = result["hot"]
        out += [
            "",
            f"Hot profile (all orders on {', '.join(hot['skus'])} and {', '.join(hot['customers'])}) vs the mix:"
            f" p99 submitted->reserved (target: hot within {hot['target_ratio']:g}x)",
        ]
        for r in hot["rows"]:
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a (an order never got there)"
            out.append(
                f"  {r['offered_per_s']:>5}/s: mix p99 {_ms(r['mix_p99_s']).strip()} ms, hot p99 "
                f"{_ms(r['hot_p99_s']).strip()} ms, ratio {ratio}"
            )
    if "growth" in result:
        gr = result["growth"]
        out += [
            "",
            f"Growth: one order of {gr['customer']} on {gr['sku']} against N open ones (medians of {GROWTH_PROBES},"
            " status timestamps)",
        ]
        for r in gr["rows"]:
            out.append(
                f"  {r['open']:>7,} open: approval (received->approved) {r['approval_s'] * 1000:8.1f} ms   "
                f"reservation (approved->reserved) {r['reservation_s'] * 1000:8.1f} ms"
            )
        if "shortage_rows" in gr:  # runs before session 10 have no shortage series
            out.append(f"  shortage on {gr['shortage_sku']} against N undecided orders of it:")
            out += [
                f"  {r['open']:>7,} open: shortage (approved->awaiting decision) {r['shortage_s'] * 1000:8.1f} ms"
                for r in gr["shortage_rows"]
            ]
        for name in ("reservation", "approval", "shortage"):
            if f"{name}_ratio" not in gr:
                continue
            value = gr[f"{name}_ratio"]
            out.append(
                f"  {name} ratio largest/smallest: {value if value is not None else 'n/a'}"
                f" (target <= {gr['target_ratio']:g})"
            )
    return out


def main(bootstrap: str, uri: str, plan: Plan, say: Say = print, results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """Run the benchmark under the e2e lock, write the JSON result, print the tables; the result."""
    commit, dirty = git_commit()
    started_at = datetime.now(UTC)
    clock = [time.monotonic()]  # restarted once the lock is held
    progress = say

    def timed(line: str) -> None:
        progress(f"[{time.monotonic() - clock[0]:6.1f}s] {line}")

    say = timed

    with e2e_lock(bootstrap, say), _environ():
        clock[0] = time.monotonic()
        bench = Bench(bootstrap, uri, plan, say)
        os.environ.update(bench.env())
        say(f"bench run {bench.run_id}: databases {bench.database}_*, processes in {bench.procs_dir}")
        load_before = os.getloadavg()
        t0 = time.monotonic()
        try:
            result = asyncio.run(bench.run())
        finally:
            bench.stop_simulator()
            procs.down()
            with contextlib.suppress(Exception):
                asyncio.run(bench.cleanup())
    result = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "commit": commit,
        "dirty": dirty,
        "mode": ("custom " if plan.custom else "") + ("quick" if plan.quick else "full"),
        "plan": {k: v for k, v in plan.__dict__.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "ferretdb_backend": stack.ferretdb_backend(),
        },
        "total_seconds": round(time.monotonic() - t0, 1),
        **result,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{started_at:%Y%m%dT%H%M%SZ}-{commit[:10]}.json"
    result["path"] = str(path.relative_to(stack.REPO_ROOT) if path.is_relative_to(stack.REPO_ROOT) else path)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for line in report(result):
        progress(line)
    return result
