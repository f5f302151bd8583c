"""`make soak`: the system under steady load for a long time (default 30 minutes at half the sustained rate,
the warehouse simulator shipping), to find what grows without bound: every minute it prints the RSS of each
process, the consumer lag and the store's size, and at the end it fits a line through the second half of the
samples (after warm-up) and fails on any series still rising: a slope test, not a threshold on one sample.

A series fails when its least-squares slope over the second half, carried over the whole run, would add more
than its tolerance: RSS 20% of its level (and at least 20 MB), lag 30 s worth of orders, store bytes per
order 20%. A leak shows as a steady slope; warm-up, caches filling and one slow minute do not.

Not in CI (`make test`/`make chaos`): `python -m orderflow.dev.soak --minutes 3` tries it briefly."""

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psutil
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from orderflow import bus, lag, procs, track
from orderflow.dev import stack
from orderflow.dev.bench import Bench, Tracker, e2e_lock, make_plan, offer, slope, watched

SUSTAINED = 12.0  # orders/s held with p99 under 1 s (docs/performance.md: quiet quick runs of 2026-12-03)
RATE = SUSTAINED / 2
SAMPLE_S = 10.0
CUSTOMERS, SKUS = 200, 500  # master data loaded in seconds; every order still touches several stock documents
MB = 1024 * 1024
RSS_TOLERANCE, RSS_FLOOR_MB = 0.20, 20.0
LAG_TOLERANCE_S = 30.0
STORE_TOLERANCE = 0.20

Say = Callable[[str], None]


@dataclass
class Series:
    """One measured quantity over the run and what counts as growing without bound."""

    name: str
    unit: str
    allowed: Callable[[list[float]], float]  # the growth the whole run may add, given the samples
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, t: float, value: float) -> None:
        """Record one sample at `t` seconds into the run."""
        self.times.append(t)
        self.values.append(value)

    def verdict(self, duration: float) -> tuple[float, float, bool]:
        """(slope per minute over the second half, growth allowed over the run, still within it)."""
        half = len(self.times) // 2
        xs, ys = self.times[half:], self.values[half:]
        per_s = slope(xs, ys)
        allowed = self.allowed(ys) if ys else 0.0
        return per_s * 60, allowed, per_s * duration <= allowed


def rss_series(name: str) -> Series:
    """RSS of one process: may grow by 20% of its level (at least 20 MB) over the run."""
    return Series(f"rss {name}", "MB", lambda ys: max(RSS_FLOOR_MB, RSS_TOLERANCE * statistics.median(ys)))


def lag_series(rate: float) -> Series:
    """Total consumer lag: may grow by 30 s worth of orders over the run."""
    return Series("lag (messages)", "msgs", lambda ys: LAG_TOLERANCE_S * rate)


def store_series() -> Series:
    """Store bytes per order handled: may grow by 20% over the run."""
    return Series("store bytes/order", "B", lambda ys: STORE_TOLERANCE * statistics.median(ys))


async def store_size(uri: str, database: str) -> tuple[int, int]:
    """(data bytes, documents) of the run's four service databases (dbStats)."""
    client = track.client(uri)
    size = docs = 0
    try:
        for service in procs.SERVICES:
            with contextlib.suppress(PyMongoError):
                st = await client[f"{database}_{service}"].command("dbStats")
                size += int(st.get("dataSize", 0))
                docs += int(st.get("objects", 0))
    finally:
        await client.close()
    return size, docs


def rss_now() -> dict[str, int]:
    """RSS per watched process (services, Kafka, FerretDB; PostgreSQL's shared memory would mislead)."""
    out = {}
    for name, members in watched().items():
        if name in ("postgres", "bench") or not members:
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            out[name] = int(members[0].memory_info().rss)
    return out


async def soak(bootstrap: str, uri: str, minutes: float, rate: float, say: Say) -> bool:
    """Run the soak; True when nothing grew without bound."""
    plan = replace(make_plan(quick=True, shipping=True), customers=CUSTOMERS, skus=SKUS)
    bench = Bench(bootstrap, uri, plan, say)
    os.environ.update(bench.env())
    duration = minutes * 60
    series: dict[str, Series] = {}
    lags = lag_series(rate)
    per_order = store_series()
    try:
        await bench.start_services()
        tracker = Tracker(marker=f"SOAK-{bench.run_id}-")
        await bench.load_master_data()
        say(
            f"soak {bench.run_id}: {minutes:g} min at {rate:g} orders/s, simulator shipping, "
            f"databases {bench.database}_*"
        )
        async with bus.producer(bootstrap) as producer:
            sending = asyncio.create_task(offer(producer, rate, duration, bench.pool, tracker, "s"))
            started = time.monotonic()
            next_print = 60.0
            while not sending.done():
                await asyncio.wait({sending}, timeout=SAMPLE_S)
                t = time.monotonic() - started
                bench.check_alive()
                for name, rss in rss_now().items():
                    series.setdefault(name, rss_series(name)).add(t, rss / MB)
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    total = await asyncio.wait_for(lag.total(bootstrap), 10)
                    lags.add(t, float(sum(total.values())))
                size, _ = await store_size(uri, bench.database)
                if tracker.sent:
                    per_order.add(t, size / len(tracker.sent))
                if t >= next_print or sending.done():
                    next_print += 60.0
                    rss_line = ", ".join(f"{n} {s.values[-1]:.0f}" for n, s in series.items())
                    lag_now = f"{lags.values[-1]:.0f}" if lags.values else "?"
                    say(
                        f"[{t / 60:4.1f} min] {len(tracker.sent)} orders; RSS MB: {rss_line}; lag {lag_now}; "
                        f"store {size / MB:.1f} MB ({size / max(1, len(tracker.sent)):.0f} B/order)"
                    )
            await sending
    finally:
        await bench.stop_services()
        with contextlib.suppress(Exception):
            await bench.cleanup()
    ok = True
    say(f"\nslopes over the second half of the run (per minute; allowed growth over {minutes:g} min):")
    for s in [*series.values(), lags, per_order]:
        if len(s.values) < 3:
            say(f"  {s.name:<24} too few samples ({len(s.values)})")
            continue
        per_min, allowed, within = s.verdict(duration)
        ok &= within
        verdict = "ok" if within else "GROWS WITHOUT BOUND"
        say(
            f"  {s.name:<24} last {s.values[-1]:10.1f} {s.unit:<4} slope {per_min:+9.2f} {s.unit}/min "
            f"(run: {per_min * minutes:+10.1f}, allowed {allowed:.1f})  {verdict}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    """`python -m orderflow.dev.soak [--minutes N] [--rate R]`; exit 1 when a series grows without bound."""
    parser = argparse.ArgumentParser(prog="orderflow.dev.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to offer load (default 30)")
    parser.add_argument("--rate", type=float, default=RATE, help=f"orders/s offered (default {RATE:g})")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error(f"--minutes and --rate must be positive (got {args.minutes:g} and {args.rate:g})")
    env = stack.env()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or env["KAFKA_BOOTSTRAP_SERVERS"]
    uri = os.environ.get("MONGODB_URI") or env["MONGODB_URI"]
    with e2e_lock(bootstrap, print):
        ok = asyncio.run(soak(bootstrap, uri, args.minutes, args.rate, print))
    print("soak: OK" if ok else "soak: FAILED (a series grows without bound)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
