"""Each service replica's own health/metrics port (as `orderflow services up` gives it) serves readiness,
Prometheus metrics that pass `promtool check metrics`, and its AsyncAPI page; the dashboard's /metrics too."""

import json
import shutil
import subprocess
import time

import httpx
import pytest

from orderflow import procs
from orderflow.asyncapi import DOC_DIR, consumes
from tests.e2e.dashboard_proc import dashboard

pytestmark = pytest.mark.e2e


def promtool(body: bytes) -> None:
    """`promtool check metrics` accepts the exposition (Debian's prometheus package; `make promtool`)."""
    tool = shutil.which("promtool")
    assert tool, "promtool missing: `make promtool` installs Debian's prometheus package"
    done = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


def ready(url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = httpx.get(url + "/health/ready", timeout=5)
            if res.status_code == 200 or time.monotonic() > deadline:
                return res
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.mark.parametrize("service", procs.SERVICES)
def test_each_service_serves_health_metrics_and_its_asyncapi_page(system: dict[str, str], service: str) -> None:
    port = procs.health_port(service, 1)
    assert port, f"{service}-1 was started without a health port"
    url = f"http://127.0.0.1:{port}"
    res = ready(url)
    assert res.status_code == 200 and res.json() == {"mongo": True, "kafka": True}
    assert httpx.get(url + "/health/live").json() == {"live": True}
    metrics = httpx.get(url + "/metrics")
    assert metrics.status_code == 200 and b"faststream_received_messages_total" in metrics.content
    promtool(metrics.content)
    page = httpx.get(url + "/docs/asyncapi")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"orderflow {service}" in page.text and "<script" not in page.text  # self-contained, no CDN
    for topic in consumes(service):
        assert f"<code>{topic}</code>" in page.text
    document = httpx.get(url + "/docs/asyncapi.json").json()
    assert document == json.loads((DOC_DIR / f"{service}.json").read_text())


def test_the_dashboard_metrics_pass_promtool(system: dict[str, str]) -> None:
    with dashboard("--interval", "1") as board:
        board.wait_fresh(time.time())
        res = httpx.get(board.url + "/metrics")
        assert res.status_code == 200 and b"orderflow_consumer_lag" in res.content
        promtool(res.content)
