"""A test session on shared servers: the per-broker lock, and a system of its own (databases, consumer
groups starting at the end of the topics, process directory), as the e2e and chaos suites use it."""

import asyncio
import fcntl
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import IO

from orderflow import demo, lag, procs
from orderflow.dev import bench
from services.runtime.kafka import ensure_topics


def broker_lock(servers: dict[str, str]) -> IO[str]:
    """Take (waiting for it) the lock e2e and chaos sessions hold per broker; closing the file releases it."""
    lock = open(bench.lock_path(servers["KAFKA_BOOTSTRAP_SERVERS"]), "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def isolated_env(servers: dict[str, str], kind: str) -> dict[str, str]:
    """The servers plus a database prefix, consumer-group prefix and process directory of a new `kind` run;
    also set in os.environ, so the CLI helpers the tests call see the same system."""
    run = uuid.uuid4().hex[:8]
    env = {
        **servers,
        "MONGODB_DATABASE": f"{kind}_{run}",
        "KAFKA_GROUP_PREFIX": f"{kind}-{run}-",
        "ORDERFLOW_PROCS_DIR": tempfile.mkdtemp(prefix=f"orderflow-{kind}-{run}-"),
        "LOG_LEVEL": "DEBUG" if kind == "e2e" else "INFO",  # e2e tests read the per-message `handled` lines
    }
    os.environ.update(env)
    return env


def start_system(env: dict[str, str], say: Callable[[str], None]) -> None:
    """Topics created, the groups at the end of the topics, one replica of each service, master data and stock."""
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    asyncio.run(ensure_topics(bootstrap))
    asyncio.run(lag.start_at_end(bootstrap))
    procs.up(1, env)
    asyncio.run(demo.load_reference_data(bootstrap, say, timeout=120))
