"""Fixtures shared by the handler tests on the in-memory broker."""

from collections.abc import AsyncIterator

import pytest

from services.intake.app import CONSUMES, NAME, build
from tests.handlers.harness import Harness


@pytest.fixture
async def intake() -> AsyncIterator[Harness]:
    """Intake on the in-memory broker with a fresh in-memory store."""
    async with Harness(NAME, CONSUMES, build) as h:
        yield h
