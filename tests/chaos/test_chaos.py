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
import time

import pytest

from orderflow import procs
from orderflow.dev import stack
from tests.chaos import harness
from tests.chaos.harness import FaultContext, Report

pytestmark = pytest.mark.chaos

FAULT_AT = 3.0  # seconds into the stream (publishing lasts ~12 s; the services work off the backlog for longer)
DOWN_FOR = 3.0
ORDERS = int(os.environ.get("CHAOS_ORDERS", "2000"))


def sigkill_in_turn(*services: str, every: float = 6.0) -> harness.Fault:
    """SIGKILL each service in turn mid-stream and restart it 3 s later (one every `every` seconds)."""

    async def fault(ctx: FaultContext) -> None:
        for i, s in enumerate(services):
            await asyncio.sleep(max(0.0, ctx.started + FAULT_AT + i * every - time.monotonic()))
            await asyncio.to_thread(procs.kill, s)
            ctx.note(f"SIGKILL {s}")
            await asyncio.sleep(DOWN_FOR)
            await asyncio.to_thread(procs.start, s, 1, ctx.env)
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


# name -> (fault, share of inbound messages the producer sends twice)
SCENARIOS: dict[str, tuple[harness.Fault | None, float]] = {
    "1 SIGKILL each in turn": (sigkill_in_turn(*procs.SERVICES), 0.0),
    "2 SIGKILL review+inventory": (sigkill_together("review", "inventory"), 0.0),
    "3 kafka stop/start": (broker_restart, 0.0),
    "4 ferretdb kill/start": (docstore_restart, 0.0),
    "5 scale out/in each": (scale_in_turn(*procs.SERVICES), 0.0),
    "6 producer dups 10%": (None, 0.10),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_invariants_hold_under_fault(chaos: Report, system: dict[str, str], scenario: str) -> None:
    fault, dup_rate = SCENARIOS[scenario]
    row = await harness.run(chaos, system, scenario, fault, n=ORDERS, dup_rate=dup_rate)
    problems = {k: v[:5] for k, v in row.violations.items() if v}
    assert not row.findings, f"{scenario}: {row.findings}"
    assert not problems, f"{scenario}: {sum(len(v) for v in row.violations.values())} violations: {problems}"
