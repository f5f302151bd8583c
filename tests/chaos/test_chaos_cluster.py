"""Chaos scenarios on a private three-broker KRaft cluster (orderflow.dev.cluster), replication 3,
min.insync.replicas 2, every producer with acks=all; each broker's clients go through a delaying TCP proxy
(tests/chaos/proxy.py), which passes bytes straight through unless a scenario slows it down:

11 Kafka slowed: 150 ms added each way on every broker connection for 20 s mid-stream;
12 one broker SIGKILLed mid-stream and brought back: nothing lost, nothing duplicated.

The cluster starts once for both (~1 min on two cores) and the services run on it with the topics created
as configured (KAFKA_TOPIC_REPLICATION_FACTOR=3, KAFKA_TOPIC_MIN_INSYNC_REPLICAS=2); the store is the suite's.
Their rows follow scenarios 1-10 in the session's table."""

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orderflow.dev import stack
from orderflow.dev.cluster import KafkaCluster
from tests.chaos import harness
from tests.chaos.harness import FaultContext, Report, fresh_system
from tests.chaos.proxy import DelayProxy, delayed

pytestmark = pytest.mark.chaos

ORDERS = int(os.environ.get("CHAOS_ORDERS", "2000"))
BROKERS = 3
LAYOUT = {"KAFKA_TOPIC_REPLICATION_FACTOR": "3", "KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "2"}
DELAY_S, DELAY_AT, DELAY_FOR = 0.150, 2.0, 20.0
KILL_AT, KILLED = 3.0, 2  # broker 2 is SIGKILLed 3 s into the stream, started again at once (it takes ~20 s)


@dataclass
class Cluster:
    """The running cluster and the proxies in front of its brokers."""

    kafka: KafkaCluster
    proxies: list[DelayProxy]


@pytest.fixture(scope="module")
def cluster(chaos: Report) -> Iterator[Cluster]:
    """Three brokers behind pass-through proxies, for this module's scenarios; removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="orderflow-chaos-cluster-"))
    fronts = stack.unused_port(BROKERS)
    kafka = KafkaCluster.create(home, BROKERS, advertised=[fronts + i for i in range(BROKERS)])
    proxies = [DelayProxy(fronts + i, b.port) for i, b in enumerate(kafka.brokers)]
    for p in proxies:
        p.start()
    started = time.monotonic()
    try:
        kafka.up()
        print(
            f"\n[chaos] {BROKERS}-broker cluster on {kafka.bootstrap} in {time.monotonic() - started:.0f}s", flush=True
        )
        yield Cluster(kafka, proxies)
    finally:
        kafka.down(remove=True)
        for p in proxies:
            p.stop()


@pytest.fixture
def clustered(chaos: Report, cluster: Cluster) -> Iterator[dict[str, str]]:
    """A fresh system on the cluster, its topics replicated 3 times with 2 in sync (harness.fresh_system)."""
    servers = {"KAFKA_BOOTSTRAP_SERVERS": cluster.kafka.bootstrap, "MONGODB_URI": chaos.servers["MONGODB_URI"]}
    with fresh_system(chaos, servers, LAYOUT) as env:
        yield env


def slowed(cluster: Cluster) -> harness.Fault:
    """Every client connection to every broker gets DELAY_S more each way for DELAY_FOR seconds."""

    async def fault(ctx: FaultContext) -> None:
        await asyncio.sleep(DELAY_AT)
        with delayed(cluster.proxies, DELAY_S):
            ctx.note(f"+{DELAY_S * 1000:.0f} ms each way on {len(cluster.proxies)} brokers")
            await asyncio.sleep(DELAY_FOR)
        ctx.note("latency removed")

    return fault


def broker_killed(cluster: Cluster) -> harness.Fault:
    """SIGKILL one broker mid-stream and start it again; the other two keep the in-sync minimum."""

    async def fault(ctx: FaultContext) -> None:
        await asyncio.sleep(KILL_AT)
        await asyncio.to_thread(cluster.kafka.kill, KILLED)
        ctx.note(f"SIGKILL broker {KILLED} of {BROKERS}")
        await asyncio.to_thread(cluster.kafka.start, KILLED)
        ctx.note(f"broker {KILLED} answers again")

    return fault


SCENARIOS = {"11 kafka +150ms latency": slowed, "12 3 brokers, 1 SIGKILLed": broker_killed}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_invariants_hold_on_the_cluster(
    chaos: Report, cluster: Cluster, clustered: dict[str, str], scenario: str
) -> None:
    row = await harness.run(chaos, clustered, scenario, SCENARIOS[scenario](cluster), n=ORDERS)
    problems = {k: v[:5] for k, v in row.violations.items() if v}
    assert not row.findings, f"{scenario}: {row.findings}"
    assert not problems, f"{scenario}: {sum(len(v) for v in row.violations.values())} violations: {problems}"
