"""Confidentiality: customer contact data and addresses never reach a log line."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from contracts import topics
from services.intake.app import CONSUMES, NAME, build
from services.runtime import logging as runtime_logging
from tests.factories import key, submitted
from tests.handlers.harness import Harness

pytestmark = pytest.mark.e2e
SECRETS = ("Zhang Secretname", "+86 571 9999 0000", "secret.person@example.com", "77 Hidden Lane", "Secretcity")


@pytest.fixture
async def intake(collection: Any, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Harness]:
    runtime_logging.configure("intake", "json", "DEBUG")
    async with Harness(NAME, CONSUMES, build, collection) as h:
        yield h
        structlog.reset_defaults()
        runtime_logging.logging.getLogger().handlers.clear()


async def test_no_contact_data_in_logs(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    order = submitted("WEB-LOG-1")
    order["customer"] = {**order["customer"], "contact_name": SECRETS[0], "phone": SECRETS[1], "email": SECRETS[2]}
    order["ship_to"] = {**order["ship_to"], "recipient": SECRETS[0], "line1": SECRETS[3], "city": SECRETS[4]}
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    broken = {**order, "channel_order_ref": "WEB-LOG-2", "total_amount": "0.00"}
    await intake.send(topics.ORDERS_SUBMITTED, broken, key(broken))
    await intake.send(
        topics.ORDERS_SUBMITTED, b'{"type": "order.submitted", "version": 7, "phone": "+86 571 9999 0000"}'
    )
    log = capsys.readouterr().err
    assert '"event": "handled"' in log and "WEB-LOG-1" in log
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} reached the logs"


def test_pii_keys_are_redacted() -> None:
    event = runtime_logging._drop_pii(None, "info", {"event": "x", "phone": "123", "email": "a@b.c", "ok": 1})
    assert event == {"event": "x", "phone": "[redacted]", "email": "[redacted]", "ok": 1}
