"""Topics for production on the real broker: missing topics are created exactly as configured, never weaker,
and a service refuses to start, with a one-line reason, on topics weaker than its configuration."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import MongoClient

from services.runtime.kafka import TopicMismatch, TopicShape, ensure_topics, topic_shapes
from services.runtime.settings import TopicSettings

pytestmark = pytest.mark.e2e


def layout(partitions: int = 6, replicas: int = 1, insync: int = 1) -> TopicSettings:
    return TopicSettings(
        kafka_topic_partitions=partitions,
        kafka_topic_replication_factor=replicas,
        kafka_topic_min_insync_replicas=insync,
    )


@pytest.fixture
async def names(admin: AIOKafkaAdminClient) -> AsyncIterator[list[str]]:
    """Two topic names of this test's own, deleted afterwards."""
    run = uuid.uuid4().hex[:8]
    made = [f"t-layout-{run}-a", f"t-layout-{run}-b"]
    yield made
    await admin.delete_topics([n for n in made if n in set(await admin.list_topics())])


async def test_missing_topics_are_created_as_configured(
    servers: dict[str, str], admin: AIOKafkaAdminClient, names: list[str]
) -> None:
    await ensure_topics(servers["KAFKA_BOOTSTRAP_SERVERS"], names, layout(partitions=3))
    assert await topic_shapes(admin, names) == {n: TopicShape(partitions=3, replicas=1, min_insync=1) for n in names}
    await ensure_topics(servers["KAFKA_BOOTSTRAP_SERVERS"], names, layout(partitions=2))  # stronger: fine


async def test_more_replicas_than_brokers_is_refused_and_nothing_weaker_is_created(
    servers: dict[str, str], admin: AIOKafkaAdminClient, names: list[str]
) -> None:
    with pytest.raises(TopicMismatch, match=r"cannot create topic t-layout-\S+ with 3 replica\(s\)") as caught:
        await ensure_topics(servers["KAFKA_BOOTSTRAP_SERVERS"], names, layout(replicas=3, insync=2))
    assert "\n" not in str(caught.value)
    assert not set(names) & set(await admin.list_topics())


async def test_an_existing_topic_with_fewer_partitions_or_in_sync_replicas_is_refused(
    servers: dict[str, str], admin: AIOKafkaAdminClient, names: list[str]
) -> None:
    await admin.create_topics([NewTopic(names[0], 2, 1), NewTopic(names[1], 6, 1)])
    await asyncio.sleep(0.5)
    with pytest.raises(TopicMismatch) as caught:
        await ensure_topics(servers["KAFKA_BOOTSTRAP_SERVERS"], names, layout(partitions=4))
    reason = str(caught.value)
    assert f"topic {names[0]}: 2 partition(s) < KAFKA_TOPIC_PARTITIONS=4" in reason
    assert names[1] not in reason
    assert "\n" not in reason
    with pytest.raises(TopicMismatch, match=r"min\.insync\.replicas=1 < KAFKA_TOPIC_MIN_INSYNC_REPLICAS=2"):
        await ensure_topics(servers["KAFKA_BOOTSTRAP_SERVERS"], names[1:], layout(partitions=6, replicas=2, insync=2))


def test_a_service_refuses_to_start_on_weaker_topics_with_a_one_line_reason(servers: dict[str, str]) -> None:
    database = f"t_layout_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **servers, "MONGODB_DATABASE": database, "KAFKA_TOPIC_PARTITIONS": "1000"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "services.intake.app"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        with MongoClient(servers["MONGODB_URI"]) as client:
            client.drop_database(f"{database}_intake")
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("intake: topic "), done.stderr[-2000:]
    assert "partition(s) < KAFKA_TOPIC_PARTITIONS=1000" in last
    assert "refusing to start" in last
    assert "Traceback" not in done.stderr
