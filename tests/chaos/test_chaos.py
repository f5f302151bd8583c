"""Fault injection on the real Kafka + FerretDB with real service processes (`make chaos`).

Each scenario runs on a fresh system (tests/chaos/conftest.py), publishes a fresh tagged workload of 2,000
orders (corrections, duplicates, cancellations, shortages, 20 poison messages; tests/chaos/workload.py) at
200 orders/s, injects its fault mid-stream, waits until every service group has drained, and proves the
invariants of tests/chaos/invariants.py. A table of all scenarios is printed at the end of the session.

Choices that keep the suite within ~20 minutes on two cores: "each service in turn" (SIGKILL, scale out/in)
is one 2,000-order run with the faults a few seconds apart (the services work off the backlog for a minute
or more, so every fault lands under load); no warehouse simulator runs, so orders rest at `reserved` and
nothing ships (stock conservation is then on_hand == counted). While the broker is down the publisher
pauses, as a channel would, and resumes on the same schedule.
"""

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from contracts import topics
from orderflow import bus, procs
from orderflow.dev import stack
from tests.chaos import harness
from tests.chaos.harness import FaultContext, Report
from tests.chaos.workload import Workload, build, build_refill, priority_approval

pytestmark = pytest.mark.chaos

FAULT_AT = 3.0  # seconds into the stream (publishing lasts ~12 s; the services work off the backlog for longer)
DOWN_FOR = 3.0
ORDERS = int(os.environ.get("CHAOS_ORDERS", "2000"))


async def kill_and_restart(ctx: FaultContext, service: str, at: float, down: float) -> None:
    """SIGKILL `service` (replica 1) `at` seconds into the stream and start it again `down` seconds later."""
    await asyncio.sleep(max(0.0, ctx.started + at - time.monotonic()))
    await asyncio.to_thread(procs.kill, service)
    ctx.note(f"SIGKILL {service}")
    await asyncio.sleep(down)
    await asyncio.to_thread(procs.start, service, 1, ctx.env)


def sigkill_in_turn(*services: str, every: float = 6.0) -> harness.Fault:
    """SIGKILL each service in turn mid-stream and restart it 3 s later (one every `every` seconds)."""

    async def fault(ctx: FaultContext) -> None:
        for i, s in enumerate(services):
            await kill_and_restart(ctx, s, FAULT_AT + i * every, DOWN_FOR)
            ctx.note(f"start {s}")

    return fault


def sigkill_together(*services: str) -> harness.Fault:
    """SIGKILL the services at once mid-stream, restart them 3 s later."""

    async def fault(ctx: FaultContext) -> None:
        await asyncio.sleep(FAULT_AT)
        for s in services:
            await asyncio.to_thread(procs.kill, s)
        ctx.note(f"SIGKILL {'+'.join(services)}")
        await asyncio.sleep(DOWN_FOR)
        for s in services:
            await asyncio.to_thread(procs.start, s, 1, ctx.env)
        ctx.note("start both")

    return fault


async def broker_restart(ctx: FaultContext) -> None:
    """Stop the Kafka broker mid-stream and start it again; channels hold their messages meanwhile."""
    await asyncio.sleep(FAULT_AT)
    ctx.touched.add("kafka")
    ctx.gate.clear()
    try:
        await asyncio.to_thread(stack.stop, "kafka")
        ctx.note("kafka stopped")
        await asyncio.sleep(DOWN_FOR)
    finally:
        await asyncio.to_thread(stack.start, "kafka")
        ctx.note("kafka healthy")
        ctx.gate.set()


async def docstore_restart(ctx: FaultContext) -> None:
    """SIGKILL FerretDB mid-stream and start it again."""
    await asyncio.sleep(FAULT_AT)
    ctx.touched.add("ferretdb")
    try:
        await asyncio.to_thread(stack.kill, "ferretdb")
        ctx.note("SIGKILL ferretdb")
        await asyncio.sleep(DOWN_FOR)
    finally:
        await asyncio.to_thread(stack.start, "ferretdb")
        ctx.note("ferretdb up")


def scale_in_turn(*services: str, every: float = 8.0, hold: float = 6.0) -> harness.Fault:
    """Each service in turn gets a second replica mid-stream, which leaves (SIGTERM) `hold` s later: two
    rebalances under load per service."""

    async def fault(ctx: FaultContext) -> None:
        for i, s in enumerate(services):
            await asyncio.sleep(max(0.0, ctx.started + 2.0 + i * every - time.monotonic()))
            await asyncio.to_thread(procs.start, s, 2, ctx.env)
            ctx.note(f"+{s}-2")
            await asyncio.sleep(hold)
            await asyncio.to_thread(procs.stop, s, 2)
            ctx.note(f"-{s}-2")

    return fault


def sigkill_repeatedly(service: str, at: tuple[float, ...], down: float = 2.0) -> harness.Fault:
    """SIGKILL `service` at each of the times `at` (seconds into the stream), restarting it `down` s later."""

    async def fault(ctx: FaultContext) -> None:
        for t in at:
            await kill_and_restart(ctx, service, t, down)
        ctx.note(f"{service} killed {len(at)}x, each restarted {down:.0f}s later")

    return fault


async def supervisor(ctx: FaultContext) -> None:
    """Approves every priority reallocation the scenario's urgent (or VIP) orders ask for, as soon as asked."""
    bootstrap = ctx.env["KAFKA_BOOTSTRAP_SERVERS"]
    urgent = set(ctx.work.orders)
    answered: set[str] = set()
    async with bus.producer(bootstrap) as p:
        async for m in bus.follow(bootstrap, topics.ORDERS_STATUS, ctx.status_start):
            key = m.get("_key") or ""
            if m.get("status") == "awaiting_priority_approval" and key in urgent and key not in answered:
                answered.add(key)
                now = datetime.now(UTC)
                await bus.publish(p, topics.ORDERS_COMMANDS, [(key, priority_approval(key, ctx.work.tag, now))])
                if len(answered) in (1, 10, 30):
                    ctx.note(f"supervisor approved {len(answered)} priority reallocation(s)")


async def zombie_replica(ctx: FaultContext) -> None:
    """Inventory runs two replicas; replica 1 is frozen (SIGSTOP) under load for longer than its consumer
    session, so its partitions move to replica 2, then thawed (SIGCONT): whatever it was writing when frozen
    arrives late and must be refused by the version guards. Its retries after the thaw are counted."""
    await asyncio.to_thread(procs.start, "inventory", 2, ctx.env)
    ctx.note("+inventory-2")
    await asyncio.sleep(max(0.0, ctx.started + FAULT_AT + 2.0 - time.monotonic()))
    pid = procs.pid_of("inventory", 1)
    assert pid is not None, "inventory-1 is not running"
    log = procs.log_path("inventory", 1)
    os.kill(pid, signal.SIGSTOP)
    ctx.note(f"SIGSTOP inventory-1 (session timeout {SESSION_TIMEOUT:.0f}s)")
    try:
        await asyncio.sleep(SESSION_TIMEOUT + 8.0)
    finally:
        before = log.stat().st_size
        os.kill(pid, signal.SIGCONT)
        ctx.note("SIGCONT inventory-1")
    await asyncio.sleep(10.0)
    with log.open("rb") as fh:
        fh.seek(before)
        after = fh.read().decode("utf-8", "replace")
    conflicts = after.count("ConflictError")
    ctx.note(
        f"inventory-1 after the thaw: {conflicts} version conflict(s) logged, {after.count('batch_retry')} retries"
    )


async def docstore_freeze(ctx: FaultContext) -> None:
    """Freeze FerretDB (SIGSTOP) mid-stream for 15 s: connections hang instead of failing; then SIGCONT."""
    await asyncio.sleep(FAULT_AT)
    pid = stack.status()["ferretdb"]["pid"]
    assert pid is not None, "FerretDB is not running"
    os.kill(pid, signal.SIGSTOP)
    ctx.note("SIGSTOP ferretdb")
    try:
        await asyncio.sleep(FREEZE_FOR)
    finally:
        os.kill(pid, signal.SIGCONT)
        ctx.note("SIGCONT ferretdb")


SESSION_TIMEOUT = 10.0  # FastStream's default session_timeout_ms for the services' consumers
FREEZE_FOR = 15.0
# every 3 s while receipts arrive (4-20.5 s and 24 s, workload.RECEIPTS) and while the big refills they cause
# are worked off; each kill may land between a refill's write and its publication (the stranded-events window)
KILLS_DURING_REFILL = tuple(3.0 + 3.0 * i for i in range(12))


@dataclass(frozen=True)
class Scenario:
    """A fault and what it needs: producer duplicates, its own workload, helpers beside it, service settings."""

    fault: harness.Fault | None
    dup_rate: float = 0.0
    workload: Callable[[str, int], Workload] = build
    helpers: tuple[harness.Fault, ...] = ()
    service_env: dict[str, str] = field(default_factory=dict)  # the services restart with it
    injected_faults: bool = False


SCENARIOS: dict[str, Scenario] = {
    "1 SIGKILL each in turn": Scenario(sigkill_in_turn(*procs.SERVICES)),
    "2 SIGKILL review+inventory": Scenario(sigkill_together("review", "inventory")),
    "3 kafka stop/start": Scenario(broker_restart),
    "4 ferretdb kill/start": Scenario(docstore_restart),
    "5 scale out/in each": Scenario(scale_in_turn(*procs.SERVICES)),
    "6 producer dups 10%": Scenario(None, dup_rate=0.10),
    "7 refills + inventory kills": Scenario(
        sigkill_repeatedly("inventory", KILLS_DURING_REFILL, down=1.0), workload=build_refill, helpers=(supervisor,)
    ),
    "8 replica SIGSTOP/SIGCONT": Scenario(zombie_replica),
    "9 ferretdb SIGSTOP 15s": Scenario(docstore_freeze),
    "10 handler faults 1%": Scenario(None, service_env={"ORDERFLOW_FAULT_RATE": "0.01"}, injected_faults=True),
}


def restart_services(env: dict[str, str]) -> None:
    """Restart every service's replica 1 with `env` (e.g. fault injection switched on)."""
    for service in procs.SERVICES:
        procs.stop(service, 1)
        procs.start(service, 1, env)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_invariants_hold_under_fault(chaos: Report, system: dict[str, str], scenario: str) -> None:
    spec = SCENARIOS[scenario]
    env = {**system, **spec.service_env}
    if spec.service_env:
        await asyncio.to_thread(restart_services, env)
    row = await harness.run(
        chaos,
        env,
        scenario,
        spec.fault,
        n=ORDERS,
        dup_rate=spec.dup_rate,
        workload=spec.workload,
        helpers=spec.helpers,
        injected_faults=spec.injected_faults,
    )
    problems = {k: v[:5] for k, v in row.violations.items() if v}
    assert not row.findings, f"{scenario}: {row.findings}"
    assert not problems, f"{scenario}: {sum(len(v) for v in row.violations.values())} violations: {problems}"
