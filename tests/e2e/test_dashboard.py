"""The dashboard in Debian's headless Chromium against the running system with traffic: the numbers the page
shows equal `orderflow lag --json` and the topics; the screenshot goes to docs/dashboard.png."""

import html.parser
import json
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import topics
from contracts.public import STATUSES
from orderflow import bus, procs
from orderflow.lag import LagMeter
from tests.e2e.checks import statuses_until
from tests.e2e.dashboard_proc import cli_lag, dashboard, read_upto, totals, wait_settled
from tests.e2e.test_pipeline import publish, workload

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
PAUSED = "review"  # stopped for the second wave, so the page shows a service with lag


class Shown(html.parser.HTMLParser):
    """The figures a rendered page shows: the text of elements marked with data-lag, data-status-count or a
    KPI id, and the orders.status position in data-read-to."""

    KPIS = ("dlq-size", "total-lag", "orders-tracked")

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[tuple[str, str], int] = {}
        self.read_to: dict[int, int] = {}
        self._into: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note the element whose text is a figure."""
        a = {k: v or "" for k, v in attrs}
        if a.get("data-lag"):
            self._into = ("lag", a["data-lag"])
        elif a.get("data-status-count"):
            self._into = ("status", a["data-status-count"])
        elif a.get("id") in self.KPIS:
            self._into = ("kpi", a["id"])
        if a.get("data-read-to"):
            self.read_to = {int(p): o for p, o in json.loads(a["data-read-to"]).items()}

    def handle_data(self, data: str) -> None:
        """Take the figure's text (thousands separators dropped)."""
        text = data.replace(",", "").strip()
        if self._into is not None and text:
            self.figures[self._into] = int(text)
            self._into = None

    def of(self, kind: str) -> dict[str, int]:
        """The figures of one kind by name."""
        return {name: n for (k, name), n in self.figures.items() if k == kind}


def chromium(*args: str) -> str:
    """Run headless Chromium once; its stdout."""
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make browser` installs Debian's chromium package"
    with tempfile.TemporaryDirectory(prefix="orderflow-chromium-") as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--window-size=1440,1300",
                "--virtual-time-budget=6000",
                *args,
            ],
            capture_output=True,
            timeout=90,
            check=True,
        )
    return done.stdout.decode()


def newest_status_counts(messages: list[dict[str, Any]], read_to: dict[int, int]) -> Counter[str]:
    """Orders per newest status among the messages below the page's read position (newest occurred_at wins,
    a later offset breaks a tie)."""
    newest: dict[str, tuple[float, str]] = {}
    for m in sorted(messages, key=lambda m: (m["_partition"], m["_offset"])):
        if m["_offset"] >= read_to.get(m["_partition"], 0) or m.get("status") not in STATUSES:
            continue
        raw = m.get("occurred_at")
        at = datetime.fromisoformat(raw).timestamp() if isinstance(raw, str) else m["_timestamp"] / 1000
        if m["_key"] not in newest or at >= newest[m["_key"]][0]:
            newest[m["_key"]] = (at, m["status"])
    return Counter(status for _, status in newest.values())


async def test_page_in_headless_chromium_shows_the_measured_numbers(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag = uuid.uuid4().hex[:6]
    orders = workload(60, tag)
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    await publish(bootstrap, orders[:40])
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.ORDERS_SUBMITTED, [(f"web:BROKEN-{tag}-{i}", b"{not json") for i in range(3)])
    await statuses_until(bootstrap, start, {f"{o['channel']}:{o['channel_order_ref']}": s for o, s in orders[:40]}, 90)
    procs.stop(PAUSED)
    try:
        await publish(bootstrap, orders[40:])
        await wait_settled(bootstrap, {PAUSED: 1})
        with dashboard(
            "--interval", "1", "--stuck", "needs_clarification=1h,awaiting_customer_decision=1h,in_review=4h"
        ) as board:
            board.wait_fresh(time.time())
            dom = chromium("--dump-dom", board.url + "/")
            expected_lag = totals(cli_lag())
            shown = Shown()
            shown.feed(dom)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            chromium(f"--screenshot={SCREENSHOT}", board.url + "/")
    finally:
        procs.start(PAUSED, 1, system)

    assert shown.of("lag") == expected_lag, (shown.of("lag"), expected_lag)
    assert expected_lag[PAUSED] >= len([o for o, s in orders[40:] if s != "needs_clarification"])
    assert shown.of("kpi")["total-lag"] == sum(expected_lag.values())
    async with LagMeter(bootstrap) as meter:
        dlq = sum(end - begin for begin, end in (await meter.log_ends((topics.ORDERS_DLQ,))).values())
    assert shown.of("kpi")["dlq-size"] == dlq >= 3
    assert shown.read_to, "the page names no orders.status position"
    expected = newest_status_counts(await read_upto(bootstrap, topics.ORDERS_STATUS, shown.read_to), shown.read_to)
    assert {k: v for k, v in shown.of("status").items() if v} == dict(expected)
    assert shown.of("kpi")["orders-tracked"] == sum(expected.values())
    assert SCREENSHOT.stat().st_size > 20_000
