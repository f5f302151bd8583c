"""The dashboard as a real process for the e2e tests, and the three views of lag they compare."""

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.dev import stack

ORDERFLOW = str(Path(sys.executable).parent / "orderflow")
METRIC = re.compile(r'^(\w+)\{group="([^"]+)",partition="(\d+)",topic="([^"]+)"\} (\S+)$', re.MULTILINE)


def get(url: str) -> bytes:
    """The body of a GET (raises on a non-200 answer)."""
    with urllib.request.urlopen(url, timeout=10) as res:
        body: bytes = res.read()
        return body


class DashboardProc:
    """`orderflow dashboard` on a free port, with its JSON state and Prometheus views."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def state(self) -> dict[str, Any]:
        """/api/state."""
        out: dict[str, Any] = json.loads(get(self.url + "/api/state"))
        return out

    def metrics(self) -> dict[tuple[str, str, int], dict[str, float]]:
        """/metrics per (group, topic, partition): metric name -> value."""
        out: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
        for name, group, part, topic, value in METRIC.findall(get(self.url + "/metrics").decode()):
            out[(group, topic, int(part))][name] = float(value)
        return out

    def wait_fresh(self, after: float, timeout: float = 120) -> dict[str, Any]:
        """The first state sampled after wall time `after` once the status history is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.state()
            except OSError:
                st = {}
            if st.get("sampled_at", 0) > after and st.get("orders", {}).get("caught_up"):
                return st
            time.sleep(0.5)
        raise AssertionError(f"the dashboard gave no fresh state within {timeout} s: {st}")


@contextmanager
def running(*args: str, timeout: float = 15) -> Iterator[subprocess.Popen[bytes]]:
    """Run `orderflow ARGS` until the block ends; then SIGTERM (SIGKILL after `timeout`) and no traceback in its
    output."""
    proc = subprocess.Popen([ORDERFLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=timeout)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
        assert "Traceback" not in out, out[-4000:]


@contextmanager
def dashboard(*args: str) -> Iterator[DashboardProc]:
    """Run the dashboard (extra CLI args appended) until the block ends."""
    port = stack.unused_port()
    with running("dashboard", "--port", str(port), *args):
        yield DashboardProc(port)


def cli_lag() -> list[dict[str, Any]]:
    """`orderflow lag --json` rows."""
    done = subprocess.run([ORDERFLOW, "lag", "--json"], capture_output=True, timeout=60, check=True)
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Lag per group from lag rows (CLI JSON or the state's partitions)."""
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        out[r["group"]] += r["lag"]
    return dict(out)


async def read_upto(bootstrap: str, topic: str, upto: dict[int, int]) -> list[dict[str, Any]]:
    """Every JSON message of the given partitions of `topic` below the given offsets, with _key/_partition/
    _offset/_timestamp (partitions assigned explicitly, so none is skipped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in upto]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 120
        while any([await consumer.position(tp) < upto[tp.partition] for tp in tps]):
            assert time.monotonic() < deadline, "reading the topic took over 120 s"
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    if r.offset < upto[r.partition]:
                        value = json.loads(r.value)
                        value.update(
                            _key=r.key.decode(), _partition=r.partition, _offset=r.offset, _timestamp=r.timestamp
                        )
                        out.append(value)
    finally:
        await consumer.stop()
    return out


async def lag_totals(bootstrap: str) -> dict[str, int]:
    """Lag per group measured in-process (cheap, for waiting loops)."""
    from orderflow import lag

    return await lag.total(bootstrap)


async def wait_settled(bootstrap: str, waiting: dict[str, int] | None = None, timeout: float = 60) -> dict[str, int]:
    """Wait until every group's lag is 0 except those in `waiting`, whose lag must be at least the given
    value and unchanged over two reads a second apart; returns the totals."""
    waiting = waiting or {}
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = await lag_totals(bootstrap)
        ok = all(v == 0 for g, v in now.items() if g not in waiting) and all(now[g] >= v for g, v in waiting.items())
        if ok and now == last:
            return now
        last = now
        await asyncio.sleep(1.0)
    raise AssertionError(f"lag did not settle within {timeout} s: {last} (expected only {waiting} waiting)")
