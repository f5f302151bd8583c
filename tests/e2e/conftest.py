"""End-to-end fixtures: the four services as real processes on the real servers, isolated per session.

Each session gets its own database prefix, consumer-group prefix (groups start at the current end of
the topics) and process directory, so it never disturbs a running demo's state. Two sessions would
still both consume the same topics, so sessions take a machine-wide lock and run one after another.
"""

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from orderflow import procs
from tests.isolation import broker_lock, isolated_env, start_system


@pytest.fixture(scope="session")
def system(servers: dict[str, str]) -> Iterator[dict[str, str]]:
    """The four services (one replica each) on throwaway databases and consumer groups; stopped afterwards."""
    lock = broker_lock(servers)
    env = isolated_env(servers, "e2e")
    start_system(env, print)
    yield env
    procs.down()
    lock.close()


@pytest.fixture
def scaled(system: dict[str, str]) -> Iterator[Callable[[str, int], None]]:
    """`scaled("inventory", 3)` runs that many replicas of a service for one test; the extra ones stop after it."""
    started: list[tuple[str, int]] = []

    def scale(service: str, count: int) -> None:
        for replica in range(2, count + 1):
            procs.start(service, replica, system)
            started.append((service, replica))

    yield scale
    for service, replica in started:
        procs.stop(service, replica)


@pytest.fixture
async def db(system: dict[str, str]) -> AsyncIterator[Any]:
    """The MongoDB client for assertions on the services' databases."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system["MONGODB_URI"], tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
async def scratch(servers: dict[str, str]) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of its own on the real store (no services), dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers["MONGODB_URI"])
    database = client[f"scratch_{uuid.uuid4().hex[:8]}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


@pytest.fixture
async def admin(servers: dict[str, str]) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client of the real broker (no services)."""
    client = AIOKafkaAdminClient(bootstrap_servers=servers["KAFKA_BOOTSTRAP_SERVERS"])
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def topic(admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A six-partition topic of this test's own, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    await admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1)])
    yield name
    await admin.delete_topics([name])
