"""The gateway on a Kafka of its own that the test stops and starts again: while Kafka is down every
submission is answered 503 with Retry-After (never 202), and once it is back nothing accepted is missing."""

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contracts import topics
from orderflow import bus, sample
from orderflow.dev import stack
from tests.e2e.gateway_proc import new_key, running

pytestmark = pytest.mark.e2e


class OwnKafka:
    """A Kafka only this module uses (own home and ports), started and stopped on demand."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="orderflow-gw-kafka-")
        self.port = stack.unused_port(span=2)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def __call__(self, verb: str) -> None:
        """`start` or `stop` this Kafka (the stack's own functions, pointed at its home and port)."""
        saved = {k: os.environ.get(k) for k in ("ORDERFLOW_HOME", "ORDERFLOW_KAFKA_PORT", "ORDERFLOW_PROFILE")}
        os.environ.update(ORDERFLOW_HOME=self.home, ORDERFLOW_KAFKA_PORT=str(self.port))
        os.environ.pop("ORDERFLOW_PROFILE", None)
        try:
            (stack.start if verb == "start" else stack.stop)("kafka")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def own_kafka(servers: dict[str, str]) -> Iterator[OwnKafka]:
    """The module's own Kafka, running; stopped and removed afterwards."""
    kafka = OwnKafka()
    kafka("start")
    try:
        yield kafka
    finally:
        kafka("stop")
        shutil.rmtree(kafka.home, ignore_errors=True)


def order(ref: str) -> dict[str, Any]:
    return sample.order(ref, random.Random(ref), datetime(2026, 12, 1, tzinfo=UTC), channel="web")


async def test_kafka_down_gives_503_and_nothing_is_lost_once_it_is_back(
    own_kafka: OwnKafka, servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": own_kafka.bootstrap,
        "MONGODB_URI": servers["MONGODB_URI"],
        "MONGODB_DATABASE": f"gwout_{uuid.uuid4().hex[:8]}",
        "KAFKA_GROUP_PREFIX": "gwout-",
    }
    key = await new_key(env, "web")
    tag = uuid.uuid4().hex[:6]
    before = [order(f"OUT-{tag}-a{i}") for i in range(3)]
    during = [order(f"OUT-{tag}-b{i}") for i in range(3)]
    log = tmp_path_factory.mktemp("gateway-outage") / "gateway.log"
    with running(env, log, ack_timeout="3", retry_after="2") as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            for o in before:
                assert (await http.post("/v1/orders", json=o)).status_code == 202
            own_kafka("stop")
            for o in during:
                res = await http.post("/v1/orders", json=o)
                assert res.status_code == 503, res.text
                assert res.headers["retry-after"] == "2"
                assert res.json()["type"] == "/problems/kafka-unavailable"
            own_kafka("start")
            deadline = time.monotonic() + 120
            pending = list(during)
            while pending and time.monotonic() < deadline:
                res = await http.post("/v1/orders", json=pending[0])
                if res.status_code == 202:
                    pending.pop(0)
                else:
                    assert res.status_code == 503, res.text
                    await asyncio.sleep(int(res.headers["retry-after"]))
            assert not pending, f"{len(pending)} submissions still refused two minutes after Kafka came back"
    sent = {f"web:{o['channel_order_ref']}": o for o in before + during}
    found: dict[str, dict[str, Any]] = {}
    for msg in await bus.read(env["KAFKA_BOOTSTRAP_SERVERS"], topics.ORDERS_SUBMITTED, idle=3.0):
        if msg.get("_key") in sent:
            found[msg["_key"]] = {k: v for k, v in msg.items() if not k.startswith("_")}
    assert set(found) == set(sent), f"missing on orders.submitted: {sorted(set(sent) - set(found))}"
    assert all(json.dumps(found[k], sort_keys=True) == json.dumps(sent[k], sort_keys=True) for k in sent)
