"""Chaos fixtures: the four services as real processes on the real servers, isolated like the e2e session
(own database prefix, own consumer groups starting at the end of the topics, own process directory), and
holding the e2e sessions' lock (one per broker), so chaos never runs beside an e2e session on the same
servers (it waits for the lock).

Each scenario gets a fresh system (databases, groups, processes): its invariants then read a store holding
only its own orders, and FerretDB stays fast (its lookups slow down as a collection grows)."""

import os
import tempfile
import time
from collections.abc import Iterator

import pytest

from orderflow.dev import stack
from tests.chaos.harness import Report, fresh_system, table
from tests.isolation import broker_lock


@pytest.fixture(scope="session")
def chaos(servers: dict[str, str]) -> Iterator[Report]:
    """The e2e/chaos lock for the whole session, and the report table printed when the session ends."""
    waited = time.monotonic()
    lock = broker_lock(servers)
    print(f"\n[chaos] e2e/chaos lock taken after {time.monotonic() - waited:.1f}s", flush=True)
    report = Report(servers)
    started = time.monotonic()
    try:
        yield report
    finally:
        for component in sorted(report.touched):  # the scenario that stopped it started it again; make sure
            stack.start(component)
        lock.close()
        if report.rows:
            text = table(report.rows)
            print(f"\n\nCHAOS REPORT ({len(report.rows)} scenarios, {time.monotonic() - started:.0f}s in all)")
            print(text)
            path = os.path.join(tempfile.gettempdir(), "orderflow-chaos-report.txt")
            with open(path, "w") as fh:
                fh.write(text + "\n")
            print(f"(also in {path})")


@pytest.fixture
def system(chaos: Report) -> Iterator[dict[str, str]]:
    """A fresh system for one scenario (harness.fresh_system) on the suite's servers."""
    with fresh_system(chaos, chaos.servers) as env:
        yield env
