"""Confidentiality and shape of the logs: customer contact data and addresses never reach a log line (handled
lines, unreadable-message warnings, exception tracebacks, library and broker lines); JSON in production,
readable console lines in development; one summary line per handled message."""

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from contracts import topics
from contracts.public import ShipTo
from services.intake import domain
from services.intake.app import CONSUMES, NAME, build
from services.runtime import batch as batch_module
from services.runtime import logging as runtime_logging
from tests.factories import key, submitted
from tests.handlers.harness import Harness

SECRETS = ("Zhang Secretname", "+86 571 9999 0000", "secret.person@example.com", "77 Hidden Lane", "Secretcity")
NAME_, PHONE, EMAIL, STREET, CITY = SECRETS


@pytest.fixture
def json_logs() -> Iterator[None]:
    runtime_logging.configure("intake", "json", "DEBUG")
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
async def intake(json_logs: None) -> AsyncIterator[Harness]:
    async with Harness(NAME, CONSUMES, build) as h:
        yield h


def private(ref: str) -> dict[str, Any]:
    """A realistic order whose contact data and address are the SECRETS."""
    order = submitted(ref)
    order["customer"] = {**order["customer"], "contact_name": NAME_, "phone": PHONE, "email": EMAIL}
    order["ship_to"] = {**order["ship_to"], "recipient": NAME_, "line1": STREET, "city": CITY}
    return order


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} reached the logs"


def lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_no_contact_data_in_logs(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    order = private("WEB-LOG-1")
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    broken = {**order, "channel_order_ref": "WEB-LOG-2", "total_amount": "0.00"}
    await intake.send(topics.ORDERS_SUBMITTED, broken, key(broken))
    await intake.send(topics.ORDERS_SUBMITTED, b'{"type": "order.submitted", "version": 7, "phone": "' + PHONE.encode())
    log = capsys.readouterr().err
    assert '"event": "handled"' in log and "WEB-LOG-1" in log
    assert_no_secrets(log)


def _hostile_variants() -> list[bytes]:
    """Unreadable messages built from an order full of contact data, each failing on or near that data."""
    order = private("WEB-LOG-H")
    text = json.dumps(order)
    return [
        json.dumps({**order, "type": "order.submited"}).encode(),
        json.dumps({**order, "version": "1"}).encode(),
        json.dumps({**order, "customer": {**order["customer"], "contact_name": NAME_ + "\u0000"}}).encode(),
        json.dumps({**order, "customer": {**order["customer"], "email": EMAIL + "\ud800"}}).encode(),
        text.replace(f'"email": "{EMAIL}"', f'"email": "{EMAIL}", "email": "{EMAIL}"').encode(),
        text.replace(f'"phone": "{PHONE}"', '"phone": NaN').encode(),
        text.replace(f'"{CITY}"', f'"{CITY}é"').encode("latin-1"),
        json.dumps({**order, "lines": order["lines"] * 1001}).encode(),
        json.dumps({**order, "special_requirements": {"notes": EMAIL * 60_000}}).encode(),
        text[: text.index(EMAIL) + 5].encode(),
    ]


async def test_unreadable_messages_never_echo_contact_data(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    variants = _hostile_variants()
    for value in variants:
        await intake.send(topics.ORDERS_SUBMITTED, value, "web:WEB-LOG-H")
    out = capsys.readouterr()
    warnings = [line for line in lines(out.err) if line["event"] == "unreadable"]
    assert len(warnings) == len(variants) == len(intake.out[topics.ORDERS_DLQ])
    assert_no_secrets(out.err + out.out)


def _validation_error(ship_to: dict[str, Any]) -> ValidationError:
    """The error pydantic raises for this address (its text quotes the input)."""
    try:
        ShipTo.model_validate(ship_to)
    except ValidationError as exc:
        assert EMAIL in str(exc)
        return exc
    raise AssertionError("the address was valid")


@pytest.mark.parametrize(
    "failure",
    [
        lambda: ValueError(f"cannot reach {NAME_} at {EMAIL} / {PHONE}"),
        lambda: KeyError(NAME_),
        lambda: _validation_error({"recipient": NAME_, "line1": STREET, "city": CITY, "line2": {"x": EMAIL}}),
    ],
    ids=["message", "key-error", "pydantic"],
)
async def test_tracebacks_keep_the_stack_but_not_the_data(
    intake: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, failure: Any
) -> None:
    def broken_decide(*args: Any, **kwargs: Any) -> Any:
        try:
            raise RuntimeError(f"first failure for {EMAIL!r}")
        except RuntimeError:
            raise failure()  # noqa: B904 - the implicit chain is what the log must show

    monkeypatch.setattr(domain, "decide", broken_decide)
    order = private("WEB-LOG-TB")
    await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    log = capsys.readouterr().err
    [failed] = [line for line in lines(log) if line["event"] == "handler_failed"]
    assert "Traceback (most recent call last)" in failed["exception"] and "broken_decide" in failed["exception"]
    assert "RuntimeError" in failed["exception"], "the chained exception is shown too"
    assert len(intake.out[topics.ORDERS_DLQ]) == 1
    assert_no_secrets(log)


def test_library_and_broker_lines_are_json_and_scrubbed(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise ConnectionError(f"peer reset while sending {{'recipient': '{NAME_}', 'email': '{EMAIL}'}}")
    except ConnectionError as exc:
        logging.getLogger("aiokafka").error("send failed for %r, call %s", {"ship_to": STREET}, PHONE, exc_info=True)
        runtime_logging.BrokerLog().log(logging.ERROR, f"ConnectionError: {exc}", exc_info=exc, extra={"topic": "t"})
    runtime_logging.BrokerLog().log(logging.INFO, "Received", extra={"topic": "t"})
    err = capsys.readouterr().err
    records = lines(err)
    assert [r["event"] for r in records] == [
        "send failed for {'…': '…'}, call [number]",
        "broker",
    ]
    assert records[0]["logger"] == "aiokafka" and "ConnectionError" in records[0]["exception"]
    assert records[1]["topic"] == "t" and records[1]["error"].startswith("ConnectionError: peer reset while sending {")
    assert_no_secrets(err)


async def test_json_lines_in_production_with_one_summary_per_message(
    intake: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = [submitted(f"WEB-LOG-S{n}") for n in range(3)]
    for order in orders:
        await intake.send(topics.ORDERS_SUBMITTED, order, key(order))
    out = capsys.readouterr()
    assert not out.out.strip(), f"nothing but JSON log lines on stderr, got stdout: {out.out[:200]}"
    handled = [line for line in lines(out.err) if line["event"] == "handled"]
    assert [h["order"] for h in handled] == [key(o) for o in orders]
    for line in handled:
        assert {"service", "topic", "partition", "offset", "event_id", "order", "order_number", "outcome", "ms"} <= set(
            line
        )
        assert line["service"] == "intake" and line["topic"] == topics.ORDERS_SUBMITTED
        assert line["outcome"].startswith("received SO-")


def test_console_lines_in_development(capsys: pytest.CaptureFixture[str]) -> None:
    runtime_logging.configure("review", "console", "INFO")
    try:
        structlog.get_logger().info("handled", order="web:WEB-1", outcome="approved", phone=PHONE)
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert not err.lstrip().startswith("{")
    assert "handled" in err and "order=web:WEB-1" in err and "service=review" in err
    assert_no_secrets(err)


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of json, console"):
        runtime_logging.configure("intake", "yaml")


def test_pii_keys_are_redacted() -> None:
    event = runtime_logging._drop_pii(None, "info", {"event": "x", "phone": "123", "email": "a@b.c", "ok": 1})
    assert event == {"event": "x", "phone": "[redacted]", "email": "[redacted]", "ok": 1}


async def test_at_info_one_line_per_batch_and_the_per_message_lines_only_at_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime_logging.configure("intake", "json", "INFO")
    monkeypatch.setattr(batch_module, "log", structlog.get_logger())  # not the one cached at an earlier level
    try:
        async with Harness(NAME, CONSUMES, build) as h:
            orders = [submitted(f"WEB-LOG-B{n}") for n in range(3)]
            for order in orders:
                await h.send(topics.ORDERS_SUBMITTED, order, key(order))
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    logged = lines(err)
    assert not [line for line in logged if line["event"] == "handled"]
    batches = [line for line in logged if line["event"] == "batch"]
    assert len(batches) == len(orders)  # the in-memory broker delivers one record per batch
    for line in batches:
        assert line["service"] == "intake" and line["records"] == 1 and line["outcomes"] == {"received": 1}
        assert line["first"].startswith(f"{topics.ORDERS_SUBMITTED}:") and line["first"] == line["last"]
