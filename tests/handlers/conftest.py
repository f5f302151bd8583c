"""Fixtures shared by the handler tests on the in-memory broker."""

from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from services.intake.app import CONSUMES, NAME, build
from tests.handlers.harness import Harness


@pytest.fixture(autouse=True)
def plain_tracebacks() -> Iterator[None]:
    """structlog's default console output with plain tracebacks: the default pretty ones (rich, with locals) take
    seconds each on a busy machine, and the tests log many on purpose (dead letters, retries)."""
    processors = structlog.get_config()["processors"]
    structlog.configure(
        processors=[
            *processors[:-1],
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    )
    yield
    structlog.reset_defaults()


@pytest.fixture
async def intake() -> AsyncIterator[Harness]:
    """Intake on the in-memory broker with a fresh in-memory store."""
    async with Harness(NAME, CONSUMES, build) as h:
        yield h
