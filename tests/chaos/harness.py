"""Runs one chaos scenario: publish the workload while a fault is injected, drain, collect, check invariants."""

import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

from contracts import topics
from orderflow import bus, lag, procs, sample
from services.inventory.store import held_by_order, stock_levels
from services.review.store import exposures as review_exposures
from services.runtime.outbox import DocStore
from tests.chaos import invariants as inv
from tests.chaos.workload import Workload, build, publish
from tests.isolation import isolated_env, start_system

DRAIN_TIMEOUT = 420.0  # under 600 s pytest timeout; FerretDB slows down as collections grow
CHECKS = (
    "numbers",
    "held",
    "paths",
    "1 event/step",
    "settled",
    "shipments",
    "stock",
    "reserv.",
    "exposure",
    "dlq",
    "no trace",
)


@dataclass
class Report:
    """What the scenarios of one pytest session share: the servers and the report rows."""

    servers: dict[str, str]
    rows: list["Row"] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # servers a scenario stopped (restarted again at the end)


@dataclass
class Row:
    """One scenario's line in the report."""

    scenario: str
    orders: int = 0
    messages: int = 0
    faults: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # e.g. a service that crashed and did not come back
    violations: dict[str, list[str]] = field(default_factory=dict)
    redelivered: int = 0
    late_after_cancel: Counter[str] = field(default_factory=Counter)
    cancelled_not_last: list[str] = field(default_factory=list)
    publish_s: float = 0.0
    drain_s: float | None = None

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.violations.values()) + len(self.findings)


@dataclass
class FaultContext:
    """What a fault injection gets: the services' env, the publisher's gate, the workload and where its
    statuses start, and a log of what it did."""

    env: dict[str, str]
    gate: asyncio.Event
    started: float
    work: Workload
    status_start: dict[int, int]
    injected: list[str] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # servers (orderflow.dev.stack components) it stops

    def note(self, what: str) -> None:
        line = f"{what} @{time.monotonic() - self.started:.1f}s"
        self.injected.append(line)
        print(f"  [fault] {line}", flush=True)


Fault = Callable[[FaultContext], Awaitable[None]]


def stop_all() -> None:
    """Stop every replica of every service (and drop the pid files of those that died)."""
    for service in procs.SERVICES:
        for replica in procs.replicas(service):
            procs.stop(service, replica)
    for service, replica in procs.crashed():
        procs.stop(service, replica)  # only drops the pid file


@contextlib.contextmanager
def fresh_system(
    report: Report, servers: dict[str, str], extra: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """A fresh system for one scenario: the four services (one replica each) on new databases and consumer
    groups, with master data and stock loaded, on `servers` with `extra` settings (e.g. the topic layout,
    which start_system's topic creation reads from the process environment); stopped afterwards, databases
    dropped unless the scenario failed, the process environment as it was."""
    saved = dict(os.environ)
    env = {**isolated_env(servers, "chaos"), **(extra or {})}
    os.environ.update(extra or {})
    print(f"\n[chaos] databases {env['MONGODB_DATABASE']}_*, service logs in {env['ORDERFLOW_PROCS_DIR']}/logs")
    rows = len(report.rows)
    try:
        start_system(env, lambda _: None)
        yield env
    finally:
        stop_all()
        if len(report.rows) > rows and not report.rows[-1].total:
            with MongoClient(env["MONGODB_URI"], serverSelectionTimeoutMS=10_000) as client:
                for service in procs.SERVICES:
                    client.drop_database(f"{env['MONGODB_DATABASE']}_{service}")
        os.environ.clear()
        os.environ.update(saved)


def say(line: str) -> None:
    print(line, flush=True)


def initial_stock() -> dict[tuple[str, str], int]:
    """What load_reference_data counted, per SKU and warehouse."""
    counted = sample.stock([p["sku"] for p in sample.products()])
    return {(c["sku"], c["warehouse"]): c["on_hand"] for c in counted}


async def lag_total(bootstrap: str) -> dict[str, int] | None:
    try:
        return await lag.total(bootstrap)
    except (TimeoutError, KafkaError, OSError):
        return None  # e.g. the group coordinator of a restarted broker is still loading


async def drain(bootstrap: str, timeout: float = DRAIN_TIMEOUT) -> float | None:
    """Wait until every service group has no lag, twice in a row a second apart (a group measured early
    may get new input from a group measured later); seconds taken, None on timeout."""
    started = time.monotonic()
    calm, last_say = 0, 0.0
    while time.monotonic() - started < timeout:
        lags = await lag_total(bootstrap)
        calm = calm + 1 if lags is not None and not any(lags.values()) else 0
        if calm >= 2:
            return time.monotonic() - started
        if time.monotonic() - last_say > 10:
            say(f"  draining {time.monotonic() - started:.0f}s: {lags}")
            last_say = time.monotonic()
        await asyncio.sleep(1.0)
    return None


def revive(env: dict[str, str], row: Row | None, when: str) -> None:
    """Restart every replica that died without being stopped, noting it as a finding of the scenario."""
    for service, replica in procs.crashed():
        tail = procs.log_tail(service, replica, 6)
        if row is not None:
            row.findings.append(f"{service}-{replica} exited by itself {when}; log tail:\n{tail}")
        say(f"  [finding] {service}-{replica} exited by itself {when}; restarting it. Log tail:\n{tail}")
        procs.stop(service, replica)  # drop the stale pid file
        procs.start(service, replica, env)


async def collect(
    bootstrap: str, topic: str, start: dict[int, int], keep: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The messages of `topic` since `start` that `keep` selects."""
    return [m for m in await bus.read(bootstrap, topic, start) if keep(m)]


Holdings = dict[str, Counter[tuple[str, str]]]  # order number -> (sku, warehouse) -> units inventory reserves


async def store_reads(env: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Holdings]:
    """Stock levels (inventory), credit exposure documents (review, their state) and what inventory reserves
    per order number in the session's databases."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env["MONGODB_URI"], tz_aware=True)
    try:
        for attempt in range(30):
            try:
                db = env["MONGODB_DATABASE"]
                inventory = DocStore(client[f"{db}_inventory"]["inventory"])
                levels = await stock_levels(inventory)
                held: Holdings = defaultdict(Counter)
                for number, units in (await held_by_order(inventory)).items():
                    held[number].update(units)
                review = DocStore(client[f"{db}_review"]["review"])
                docs = [  # the credit total as stored, the claims as their order documents hold them
                    {"_id": f"credit:{cust}", "total": total, "orders": claims}
                    for cust, (total, claims) in (await review_exposures(review)).items()
                ]
                return levels, docs, held
            except PyMongoError:
                if attempt == 29:
                    raise
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")
    finally:
        await client.close()


async def run(
    report: Report,
    env: dict[str, str],
    name: str,
    fault: Fault | None,
    *,
    n: int = 2000,
    dup_rate: float = 0.0,
    workload: Callable[[str, int], Workload] = build,
    helpers: tuple[Fault, ...] = (),
    injected_faults: bool = False,
) -> Row:
    """One scenario end to end on a fresh system (`env`); returns its report row (violations per invariant).
    `helpers` run beside the stream until the drain is over (e.g. a supervisor answering the orders);
    `injected_faults`: the services fail handlers on purpose (services.runtime.faults), so those dead letters
    are expected, each must have left no trace, and the orders they hit may stop where the fault struck."""
    row = Row(name)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    revive(env, None, "before the scenario")
    if await drain(bootstrap, 120) is None:
        row.findings.append("the system was not drained before the scenario started")
    tag = uuid.uuid4().hex[:6]
    work: Workload = workload(tag, n)
    row.orders = len(work.orders)
    status_start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    dlq_start = await bus.end_offsets(bootstrap, topics.ORDERS_DLQ)
    shipments_start = await bus.end_offsets(bootstrap, topics.FULFILLMENT_SHIPMENTS)
    gate = asyncio.Event()
    gate.set()
    ctx = FaultContext(env, gate, time.monotonic(), work, status_start)
    say(f"\n=== {name}: {row.orders} orders, tag {tag}, kinds {dict(work.counts())}")
    tasks = [asyncio.create_task(publish(bootstrap, work, dup_rate=dup_rate, gate=gate))]
    if fault is not None:
        tasks.append(asyncio.create_task(fault(ctx)))
    beside = [asyncio.create_task(h(ctx)) for h in helpers]
    try:
        results = await asyncio.gather(*tasks)
        published = results[0]
        say(f"  published {published.messages} messages in {published.seconds:.1f}s (paused {published.paused_s:.1f}s)")
        revive(env, row, "during the fault")
        row.drain_s = await drain(bootstrap)
    finally:
        report.touched |= ctx.touched
        gate.set()
        for t in tasks + beside:
            t.cancel()
    row.faults = ctx.injected + (
        [f"producer sent {sum(published.duplicated.values())} messages twice {dict(published.duplicated)}"]
        if dup_rate
        else []
    )
    row.messages, row.publish_s = published.messages, published.seconds
    revive(env, row, "while draining")
    if row.drain_s is None:
        row.findings.append(f"not drained within {DRAIN_TIMEOUT:.0f}s: {await lag_total(bootstrap)}")
    await asyncio.sleep(1.0)
    raw = await collect(bootstrap, topics.ORDERS_STATUS, status_start, lambda m: tag in (m.get("_key") or ""))
    statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in sorted(raw, key=lambda m: (m["_partition"], m["_offset"])):
        statuses[m["_key"]].append(m)
    letters = await collect(bootstrap, topics.ORDERS_DLQ, dlq_start, lambda m: tag in str(m.get("payload", "")))
    faulted = inv.injected(letters) if injected_faults else []
    if faulted:
        letters = [m for m in letters if inv.INJECTED not in m.get("reason", "")]
        by_service = dict(Counter(m["service"] for m in faulted))
        row.faults.append(f"{len(faulted)} messages failed by injection {by_service}")
    hit = {m.get("key") for m in faulted}  # orders a fault stopped: they may rest where it struck
    plans = {k: p for k, p in work.orders.items() if k not in hit}
    whole = {k: v for k, v in statuses.items() if k not in hit}
    sent = await collect(
        bootstrap,
        topics.FULFILLMENT_SHIPMENTS,
        shipments_start,
        lambda m: tag in str(m.get("channel_order_ref", "")) or m.get("type") == "shipment.voided",
    )
    ours = {m["shipment_id"] for m in sent if m.get("type") == "shipment.opened"}
    sent = [m for m in sent if m.get("shipment_id") in ours]  # voidings name no channel order: by shipment
    levels, exposure_docs, held = await store_reads(env)

    v = row.violations
    v["numbers"] = inv.numbering(plans, whole)
    v["held"] = inv.held_until_corrected(plans, whole)
    v["paths"], row.late_after_cancel = inv.state_machine(statuses)
    v["1 event/step"] = inv.one_event_per_transition(statuses)
    v["settled"] = inv.settled(plans, whole)
    v["shipments"], shipments_redelivered = inv.shipments(whole, sent)
    counted = initial_stock()
    for at, qty in work.received.items():  # goods receipts (scenario 7)
        counted[at] = counted.get(at, 0) + qty
    v["stock"] = inv.stock(levels, counted, {})  # nothing ships: no warehouse simulator runs
    # an order a fault hit may rightly differ in a store the failed message never reached (e.g. a dead-lettered
    # cancellation leaves review's claim): its reservations and claims are left out, its no-trace check stays
    stopped = {m["order_number"] for k in hit for m in statuses.get(k, []) if m.get("order_number")}
    levels_rest = inv.without(levels, [held[n] for n in stopped if n in held])
    units = {n: sum(c.values()) for n, c in held.items()}
    v["reserv."] = inv.reservations(levels_rest, plans, whole) + inv.waiting_hold_less(plans, whole, units)
    open_exposure = inv.open_exposure(plans, whole)
    v["exposure"] = inv.exposure(inv.without_claims(exposure_docs, stopped), open_exposure)
    row.cancelled_not_last = inv.cancelled_not_last(statuses)
    v["dlq"], dlq_redelivered = inv.dead_letters(letters, work.poison, published.poison_records)
    resent = {s.key for s in work.sends if s.what == "duplicate"}  # its copy may rightly succeed
    v["no trace"] = inv.no_trace(faulted, statuses, resent)
    redelivered = inv.redeliveries(statuses)
    row.redelivered = sum(n - 1 for *_, n in redelivered) + dlq_redelivered + shipments_redelivered
    say(
        f"  drained in {row.drain_s if row.drain_s is None else round(row.drain_s, 1)}s; "
        f"{len(raw)} status messages, {len(sent)} shipment messages, {len(letters)} dead letters; "
        f"redelivered (same event id): "
        f"{row.redelivered}; late statuses after a cancellation: {dict(row.late_after_cancel)}"
    )
    say(
        f"  checked: {sum(len(o) for o in open_exposure.values())} open approved orders holding "
        f"{sum(sum(o.values()) for o in open_exposure.values()) / 100:.2f} over {len(open_exposure)} customers; "
        f"{sum(r['reserved'] for r in levels)} units reserved over {sum(1 for r in levels if r['reserved'])} "
        f"SKU/warehouses; final statuses {dict(Counter(final(m) for m in statuses.values()))}"
    )
    if row.cancelled_not_last:
        say(f"  {len(row.cancelled_not_last)} cancelled orders end with another status, e.g.:")
        for line in row.cancelled_not_last[:3]:
            say(f"    {line}")
    for key, status, event_id, times in redelivered[:10]:
        say(f"    redelivered: {key} {status} {event_id} x{times}")
    if len(redelivered) > 10:
        say(f"    ... and {len(redelivered) - 10} more")
    for check, found in v.items():
        for line in found[:8]:
            say(f"  VIOLATION [{check}] {line}")
        if len(found) > 8:
            say(f"  VIOLATION [{check}] ... {len(found) - 8} more")
    for line in row.findings:
        say(f"  FINDING {line}")
    report.rows.append(row)
    return row


def final(msgs: list[dict[str, Any]]) -> str:
    """An order's last state change ("-" when it has none: only refusals, e.g. its submission failed)."""
    changes = inv.effective(msgs)
    return changes[-1]["status"] if changes else "-"


def table(rows: list[Row]) -> str:
    """The report: one line per scenario (invariant columns: ok or the number of violations)."""
    widths = [max(len(c), 4) + 2 for c in CHECKS]
    head = f"{'scenario':<28}{'orders':>7}{'msgs':>7}" + "".join(
        f"{c:>{w}}" for c, w in zip(CHECKS, widths, strict=True)
    )
    head += f"{'findings':>9}{'redeliv':>9}{'late':>6}{'cxl!=last':>11}{'drain s':>9}"
    head += "  faults injected (s after stream start)"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r.scenario:<28}{r.orders:>7}{r.messages:>7}"
        line += "".join(
            f"{('ok' if not r.violations.get(c) else str(len(r.violations[c]))):>{w}}"
            for c, w in zip(CHECKS, widths, strict=True)
        )
        drain = "timeout" if r.drain_s is None else f"{r.drain_s:.1f}"
        line += f"{len(r.findings):>9}{r.redelivered:>9}{sum(r.late_after_cancel.values()):>6}"
        line += f"{len(r.cancelled_not_last):>11}{drain:>9}"
        line += "  " + ("; ".join(r.faults) or "-")
        lines.append(line)
    return "\n".join(lines)
