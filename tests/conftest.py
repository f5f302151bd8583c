"""Fixtures: the real servers (given by env, testcontainers with Docker, or the project's own stack)."""

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, str]]:
    """Kafka bootstrap servers and a Mongo URI: from env, else containers (Docker), else the local stack's
    `test` profile (own data directory and ports: a later `make demo` sees none of the tests' messages)."""
    given = {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI") if os.environ.get(k)}
    if len(given) == 2:
        yield given
        return
    if _docker_available():  # pragma: no cover - no Docker engine on our CI machines
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer("apache/kafka:4.1.0") as kafka, MongoDbContainer("mongo:8") as mongo:
            env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(), "MONGODB_URI": mongo.get_connection_url()}
            os.environ.update(env)
            yield env
        return
    from orderflow.dev import stack

    os.environ.setdefault("ORDERFLOW_PROFILE", "test")  # the tests' own servers and topics, never the demo's
    env = stack.up(progress=print)
    os.environ.update(env)
    yield env


@pytest.fixture
async def collection(servers: dict[str, str]) -> AsyncIterator[Any]:
    """A fresh collection in a throwaway database, dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers["MONGODB_URI"], tz_aware=True)
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield client[name]["svc"]
    await client.drop_database(name)
    await client.close()
