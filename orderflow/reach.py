"""The command line fails like a tool: a server it cannot reach is one line on stderr naming the server, its
address and the variable that sets it, after a bounded wait (`orderflow --timeout`), and exit code 2;
`orderflow --debug` shows the traceback instead.

Each command says which servers it needs with `@needs(KAFKA, STORE)`: they are checked before the command
runs, and a connection failure while it runs is reported the same way."""

import asyncio
import functools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")
KAFKA, STORE = "kafka", "store"
EXIT_UNREACHABLE = 2


@dataclass
class Options:
    """The root command's options: seconds to wait for a server, and whether to show tracebacks."""

    timeout: float = 5.0
    debug: bool = False


OPTIONS = Options()


class Unreachable(Exception):
    """A server the command needs did not answer; the message is the one line shown."""


def _stack_default(variable: str) -> str:
    from orderflow.dev import stack

    return stack.env()[variable]


def kafka_address() -> str:
    """KAFKA_BOOTSTRAP_SERVERS, else the local stack's Kafka."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or _stack_default("KAFKA_BOOTSTRAP_SERVERS")


def store_address() -> str:
    """MONGODB_URI, else the local stack's FerretDB."""
    return os.environ.get("MONGODB_URI") or _stack_default("MONGODB_URI")


def _shown_uri(uri: str) -> str:
    """The URI without credentials or options (never print a password)."""
    return re.sub(r"//[^@/]*@", "//", uri).split("?", 1)[0]


def _where(variable: str) -> str:
    if os.environ.get(variable):
        return f"set by {variable}"
    return f"the local stack's; set {variable} for another, or start it with `orderflow stack up`"


def kafka_problem() -> str:
    """The line saying Kafka was not reached."""
    return f"cannot reach Kafka at {kafka_address()} within {OPTIONS.timeout:g} s ({_where('KAFKA_BOOTSTRAP_SERVERS')})"


def store_problem() -> str:
    """The line saying the store was not reached."""
    return (
        f"cannot reach the store (MongoDB) at {_shown_uri(store_address())} within {OPTIONS.timeout:g} s "
        f"({_where('MONGODB_URI')})"
    )


async def check_kafka() -> None:
    """Bootstrap a Kafka client within the timeout, or raise Unreachable."""
    from aiokafka.client import AIOKafkaClient

    from services.runtime.kafka import client_kwargs

    client = AIOKafkaClient(
        bootstrap_servers=kafka_address(), request_timeout_ms=int(OPTIONS.timeout * 1000), **client_kwargs()
    )
    quiet = logging.getLogger("aiokafka")
    level, quiet.level = quiet.level, logging.CRITICAL  # its connection warnings would repeat our one line
    try:
        await asyncio.wait_for(client.bootstrap(), OPTIONS.timeout)
    except Exception as exc:  # any failure to bootstrap means not reachable for this command
        raise Unreachable(kafka_problem()) from exc
    finally:
        quiet.level = level
        await client.close()


async def check_store() -> None:
    """Ping the store within the timeout, or raise Unreachable."""
    from pymongo import AsyncMongoClient

    from services.runtime.settings import ServiceSettings

    waited = int(OPTIONS.timeout * 1000)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        store_address(),
        serverSelectionTimeoutMS=waited,
        connectTimeoutMS=waited,
        **ServiceSettings().mongo_credentials(),
    )
    try:
        await asyncio.wait_for(client.admin.command("ping"), OPTIONS.timeout + 1)
    except Exception as exc:  # any failure to ping means not reachable for this command
        raise Unreachable(store_problem()) from exc
    finally:
        await client.close()


def _unreachable_from(exc: BaseException, servers: tuple[str, ...]) -> Unreachable | None:
    """The one line for a connection failure raised while the command ran (None: not a connection failure)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
    from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

    if isinstance(exc, Unreachable):
        return exc
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError) and KAFKA in servers:
        return Unreachable(kafka_problem())
    if isinstance(exc, ServerSelectionTimeoutError | AutoReconnect) and STORE in servers:
        return Unreachable(store_problem())
    return None


async def check(*servers: str) -> None:
    """Check each of the servers (Kafka first), raising Unreachable for the first that does not answer."""
    if KAFKA in servers:
        await check_kafka()
    if STORE in servers:
        await check_store()


def needs(*servers: str, first: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Check the servers before the command runs (`first=False`: the command calls `check` itself once its
    arguments are read); report an unreachable one as one line and exit 2."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                if first:
                    asyncio.run(check(*servers))
                return command(*args, **kwargs)
            except Exception as exc:
                problem = _unreachable_from(exc, servers)
                if problem is None or OPTIONS.debug:
                    raise
                typer.echo(f"orderflow: {problem}", err=True)
                raise typer.Exit(EXIT_UNREACHABLE) from None

        return run

    return decorate


def set_options(timeout: float, debug: bool) -> None:
    """Record the root command's options (called by its callback)."""
    if timeout <= 0:
        raise typer.BadParameter("must be above 0 seconds", param_hint="--timeout")
    OPTIONS.timeout, OPTIONS.debug = timeout, debug
