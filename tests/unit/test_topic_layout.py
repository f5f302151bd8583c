"""Topics for production: the layout comes from configuration, and an existing topic weaker than it is named."""

import pytest
from pydantic import ValidationError

from contracts import topics
from services.runtime.kafka import (
    PARTITIONS,
    TopicMismatch,
    TopicShape,
    bootstrap_servers,
    ensure_topics,
    new_topic,
    shortfalls,
)
from services.runtime.settings import TopicSettings

PROD = TopicSettings(kafka_topic_partitions=12, kafka_topic_replication_factor=3, kafka_topic_min_insync_replicas=2)


def test_local_defaults_are_one_replica_one_in_sync_six_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_TOPIC_PARTITIONS", "KAFKA_TOPIC_REPLICATION_FACTOR", "KAFKA_TOPIC_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(var, raising=False)
    local = TopicSettings()
    assert (local.kafka_topic_replication_factor, local.kafka_topic_min_insync_replicas) == (1, 1)
    assert local.kafka_topic_partitions == PARTITIONS == 6


def test_the_environment_sets_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("KAFKA_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "2")
    assert TopicSettings() == PROD


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_TOPIC_PARTITIONS": "0"}, "KAFKA_TOPIC_PARTITIONS"),
        ({"KAFKA_TOPIC_REPLICATION_FACTOR": "three"}, "KAFKA_TOPIC_REPLICATION_FACTOR"),
    ],
)
def test_bad_settings_are_refused_naming_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=named):
        TopicSettings()


async def test_more_in_sync_replicas_than_replicas_is_refused_before_the_cluster_is_asked() -> None:
    impossible = TopicSettings(kafka_topic_replication_factor=2, kafka_topic_min_insync_replicas=3)
    with pytest.raises(
        TopicMismatch, match="KAFKA_TOPIC_MIN_INSYNC_REPLICAS=3 exceeds KAFKA_TOPIC_REPLICATION_FACTOR=2"
    ):
        await ensure_topics("127.0.0.1:1", layout=impossible)  # nothing listens there


async def test_unreadable_settings_are_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "many")
    with pytest.raises(TopicMismatch, match=r"^invalid topic settings: KAFKA_TOPIC_PARTITIONS: Input should be"):
        await ensure_topics("127.0.0.1:1")


def test_a_new_topic_is_made_exactly_as_configured() -> None:
    t = new_topic(topics.ORDERS_SUBMITTED, PROD)
    assert (t.num_partitions, t.replication_factor) == (12, 3)
    assert t.topic_configs == {"min.insync.replicas": "2"}
    compacted = new_topic(sorted(topics.COMPACTED)[0], PROD)
    assert compacted.topic_configs == {"min.insync.replicas": "2", "cleanup.policy": "compact"}


def test_a_topic_at_least_as_strong_as_configured_passes() -> None:
    assert shortfalls("t", TopicShape(partitions=12, replicas=3, min_insync=2), PROD) == []
    assert shortfalls("t", TopicShape(partitions=24, replicas=5, min_insync=3), PROD) == []
    assert shortfalls("t", TopicShape(partitions=12, replicas=3, min_insync=None), PROD) == []  # not readable


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        (TopicShape(12, 1, 2), "1 replica(s) < KAFKA_TOPIC_REPLICATION_FACTOR=3"),
        (TopicShape(6, 3, 2), "6 partition(s) < KAFKA_TOPIC_PARTITIONS=12"),
        (TopicShape(12, 3, 1), "min.insync.replicas=1 < KAFKA_TOPIC_MIN_INSYNC_REPLICAS=2"),
    ],
)
def test_each_weakness_of_an_existing_topic_is_named_on_one_line(shape: TopicShape, says: str) -> None:
    [line] = shortfalls("orders.submitted", shape, PROD)
    assert line.startswith("topic orders.submitted: ")
    assert says in line
    assert "\n" not in line


def test_every_weakness_of_one_topic_is_on_its_line() -> None:
    [line] = shortfalls("orders.status", TopicShape(6, 1, 1), PROD)
    assert line.count(" < ") == 3


def test_a_bootstrap_list_names_every_broker() -> None:
    assert bootstrap_servers("k1:9092, k2:9092,k3:9092") == ["k1:9092", "k2:9092", "k3:9092"]
    assert bootstrap_servers("kafka.kafka.svc:9093") == ["kafka.kafka.svc:9093"]
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS=' , '"):
        bootstrap_servers(" , ")
