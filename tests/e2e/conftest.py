"""End-to-end fixtures: the four services as real processes on the real servers, isolated per session.

Each session gets its own database prefix, consumer-group prefix (groups start at the current end of
the topics) and process directory, so it never disturbs a running demo's state. Two sessions would
still both consume the same topics, so sessions take a machine-wide lock and run one after another.
"""

import asyncio
import fcntl
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from orderflow import demo, lag, procs
from services.runtime.kafka import ensure_topics


@pytest.fixture(scope="session")
def system(servers: dict[str, str]) -> Iterator[dict[str, str]]:
    """The four services (one replica each) on throwaway databases and consumer groups; stopped afterwards."""
    broker = servers["KAFKA_BOOTSTRAP_SERVERS"].replace(":", "_").replace(",", "+")
    lock = open(os.path.join(tempfile.gettempdir(), f"orderflow-e2e-{broker}.lock"), "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    run = uuid.uuid4().hex[:8]
    env = {
        **servers,
        "MONGODB_DATABASE": f"e2e_{run}",
        "KAFKA_GROUP_PREFIX": f"e2e-{run}-",
        "ORDERFLOW_PROCS_DIR": tempfile.mkdtemp(prefix=f"orderflow-e2e-{run}-"),
        "LOG_LEVEL": "INFO",
    }
    os.environ.update(env)
    bootstrap = servers["KAFKA_BOOTSTRAP_SERVERS"]
    asyncio.run(ensure_topics(bootstrap))
    asyncio.run(lag.start_at_end(bootstrap))
    procs.up(1, env)
    asyncio.run(demo.load_reference_data(bootstrap, print, timeout=120))
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
