"""End-to-end fixtures: the four services as real processes on the real servers, with a fresh database."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from orderflow import demo, procs


@pytest.fixture(scope="session")
def system(servers: dict[str, str]) -> Iterator[dict[str, str]]:
    """The four services (one replica each) on a throwaway database; stopped afterwards."""
    procs.down()
    env = {**servers, "MONGODB_DATABASE": f"e2e_{uuid.uuid4().hex[:8]}", "LOG_LEVEL": "INFO"}
    os.environ["MONGODB_DATABASE"] = env["MONGODB_DATABASE"]
    procs.up(1, env)
    asyncio.run(demo.load_reference_data(servers["KAFKA_BOOTSTRAP_SERVERS"], print, timeout=120))
    yield env
    procs.down()


@pytest.fixture
async def db(system: dict[str, str]) -> AsyncIterator[Any]:
    """The services' database (read-only use in assertions)."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system["MONGODB_URI"], tz_aware=True)
    yield client[system["MONGODB_DATABASE"]]
    await client.close()
