"""Graceful shutdown: SIGTERM mid-stream finishes the batch in flight, commits, exits 0 within the grace time;
after a restart nothing is lost and no transition is published twice under different event ids."""

import asyncio
import os
import signal
import time
import uuid

import pytest

from contracts import topics
from orderflow import bus, procs
from tests.e2e.checks import statuses_until
from tests.e2e.test_pipeline import assert_each_once, publish, workload

pytestmark = pytest.mark.e2e
GRACE_S = 30.0  # Kubernetes' default terminationGracePeriodSeconds


def _exit_code_after_sigterm(pid: int, grace: float) -> int | None:
    """SIGTERM `pid` (a child of this process) and wait for it: its exit code, or None past `grace`."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("victim", ["intake", "inventory"])
async def test_sigterm_mid_stream_exits_cleanly_and_loses_nothing(system: dict[str, str], victim: str) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    orders = workload(200, uuid.uuid4().hex[:6])
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    await publish(bootstrap, orders[:120])
    await asyncio.sleep(1.0)  # the victim is busy with batches of the first wave
    pid = procs.pid_of(victim)
    assert pid is not None, f"{victim} is not running"
    code = await asyncio.to_thread(_exit_code_after_sigterm, pid, GRACE_S)
    procs.stop(victim)  # forget the pid file (the process is gone)
    assert code == 0, f"{victim} exited with {code} after SIGTERM (None: still running after {GRACE_S} s)"
    assert "stopped" in procs.log_tail(victim, lines=40), "the service did not log its orderly stop"
    await publish(bootstrap, orders[120:])
    procs.start(victim, 1, system)
    expected = {f"{o['channel']}:{o['channel_order_ref']}": want for o, want in orders}
    seen = await statuses_until(bootstrap, start, expected, timeout=120)
    assert_each_once(orders, seen)
