"""`orderflow lag --json`, the dashboard's /api/state and its /metrics exporter agree on lag: a stopped service's
lag grows in all three, and drains to 0 in all three once it runs again."""

import time
import uuid
from typing import Any

import pytest

from orderflow import procs
from tests.e2e.dashboard_proc import DashboardProc, cli_lag, dashboard, totals, wait_settled
from tests.e2e.test_pipeline import publish, workload

pytestmark = pytest.mark.e2e
VICTIM = "inventory"


def per_partition(rows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """The victim's lag per (topic, partition)."""
    return {(r["topic"], r["partition"]): r["lag"] for r in rows if r["group"] == VICTIM}


def three_views(board: DashboardProc, timeout: float = 20) -> dict[tuple[str, int], int]:
    """The victim's lag per partition once the CLI, the dashboard state sampled after it and the exporter agree
    (the system is quiet, so one refresh later they must); returns that lag."""
    deadline = time.monotonic() + timeout
    while True:
        cli = per_partition(cli_lag())
        measured = time.time()
        st = board.wait_fresh(measured)
        api = per_partition(st["partitions"])
        scraped = board.metrics()
        exported = {(t, p): int(v["orderflow_consumer_lag"]) for (g, t, p), v in scraped.items() if g == VICTIM}
        ages = {(t, p): v["orderflow_consumer_oldest_unconsumed_age_seconds"] for (g, t, p), v in scraped.items()}
        if cli == api == exported or time.monotonic() > deadline:
            assert cli == api == exported, (cli, api, exported)
            for key, n in exported.items():
                assert (ages[key] > 0) == (n > 0), f"{key}: lag {n} but oldest age {ages[key]}"
            return cli


async def test_stopped_service_lag_grows_then_drains_in_cli_dashboard_and_exporter(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag = uuid.uuid4().hex[:6]
    orders = [o for o in workload(60, tag) if o[1] == "reserved"]
    await wait_settled(bootstrap)
    with dashboard("--interval", "1") as board:
        try:
            await publish(bootstrap, orders[:10])
            procs.stop(VICTIM)
            await publish(bootstrap, orders[10:30])
            await wait_settled(bootstrap, {VICTIM: 1})
            first = three_views(board)
            assert sum(first.values()) >= 20, first
            await publish(bootstrap, orders[30:])
            await wait_settled(bootstrap, {VICTIM: sum(first.values()) + 1})
            second = three_views(board)
            assert sum(second.values()) >= sum(first.values()) + len(orders[30:]), (first, second)
        finally:
            procs.start(VICTIM, 1, system)
        await wait_settled(bootstrap, timeout=90)
        drained = three_views(board)
        assert set(drained.values()) == {0}, drained
        assert totals(board.state()["partitions"])[VICTIM] == 0
