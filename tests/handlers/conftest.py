"""Fixtures shared by the handler tests on the in-memory broker."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.intake.app import CONSUMES, NAME, build
from tests.handlers.harness import Harness


@pytest.fixture
async def intake(collection: Any) -> AsyncIterator[Harness]:
    """Intake on the in-memory broker with a fresh collection."""
    async with Harness(NAME, CONSUMES, build, collection) as h:
        yield h
