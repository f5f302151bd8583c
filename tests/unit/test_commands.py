"""`orderflow order ...`: commands are checked against the public contract before anything is sent."""

from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.public import OrderCancel, PriorityApproval, ReviewDecision, ShortageDecision
from orderflow import commands, reach
from orderflow.cli import app


def test_each_command_is_built_for_the_order_key() -> None:
    cancel = commands.build("order.cancel", "web:WEB-1", "cs-1", reason="asked")
    review = commands.build("order.review-decision", "fax:FX-2", "rv-1", decision="reject", reasons=["price"])
    short = commands.build("order.shortage-decision", "edi:E-3", "cs-1", choice="ship_partial", remainder="backorder")
    prio = commands.build("order.priority-approval", "phone:P-4", "sup-1", approved=False)
    assert isinstance(cancel, OrderCancel) and (cancel.channel, cancel.channel_order_ref) == ("web", "WEB-1")
    assert isinstance(review, ReviewDecision) and review.reasons == ["price"]
    assert isinstance(short, ShortageDecision) and short.remainder == "backorder" and short.substitute_sku is None
    assert isinstance(prio, PriorityApproval) and prio.approved is False
    assert cancel.command_id != commands.build("order.cancel", "web:WEB-1", "cs-1", reason="asked").command_id


@pytest.mark.parametrize(
    ("kind", "key", "fields", "named"),
    [
        ("order.shortage-decision", "web:W-1", {"choice": "ship_some"}, "choice"),
        ("order.shortage-decision", "web:W-1", {"choice": "ship_partial", "remainder": "later"}, "remainder"),
        ("order.review-decision", "web:W-1", {"decision": "maybe"}, "decision"),
        ("order.cancel", "pigeon:W-1", {"reason": "x"}, "channel"),
        ("order.cancel", "web:", {"reason": "x"}, "channel_order_ref"),
    ],
)
def test_a_command_the_contract_refuses_is_not_sent_and_the_field_is_named(
    kind: str, key: str, fields: dict[str, str], named: str
) -> None:
    with pytest.raises(commands.CommandError, match=f"{named}: "):
        commands.build(kind, key, "cs-1", **fields)


def test_the_cli_refuses_a_bad_choice_with_exit_code_2_and_the_reason() -> None:
    result = CliRunner().invoke(app, ["order", "shortage", "web:W-1", "ship_partial", "--remainder", "later"])
    assert result.exit_code == 2 and "remainder: Input should be 'cancel' or 'backorder'" in result.output
    result = CliRunner().invoke(app, ["order", "priority", "web:W-1", "perhaps"])
    assert result.exit_code == 2 and "approve or deny" in result.output


def test_an_answer_is_described_with_its_reasons() -> None:
    refused = {
        "_key": "web:W-1",
        "status": "shipped",
        "reasons": [{"code": "already_shipped", "message": "cannot cancel"}],
        "details": {"refused": "order.cancel"},
        "promise_date": None,
    }
    assert commands.describe(refused) == "refused: order.cancel for web:W-1 — already_shipped: cannot cancel"
    assert commands.is_refusal(refused) and not commands.is_refusal(None)
    done = {**refused, "status": "cancelled", "reasons": [], "details": {}}
    assert commands.describe(done) == "web:W-1 -> cancelled" and not commands.is_refusal(done)
    assert "no answer yet" in commands.describe(None)


def _answer(monkeypatch: pytest.MonkeyPatch, status: dict[str, Any]) -> list[str]:
    """Make `orderflow order` get `status` as its answer; returns the kinds of the commands sent."""
    sent: list[str] = []

    async def send(bootstrap: str, command: commands.Command, wait: float = 10.0) -> dict[str, Any]:
        sent.append(command.type)
        return {**status, "_key": f"{command.channel}:{command.channel_order_ref}"}

    async def reachable() -> None:
        return None

    monkeypatch.setattr(commands, "send", send)
    monkeypatch.setattr(reach, "check_kafka", reachable)
    monkeypatch.setattr(reach, "check_store", reachable)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    return sent


@pytest.mark.parametrize(
    "argv",
    [
        ["order", "cancel", "web:NOPE"],
        ["order", "review", "web:NOPE", "approve"],
        ["order", "shortage", "web:NOPE", "wait"],
        ["order", "priority", "web:NOPE", "approve"],
    ],
)
def test_a_refused_command_is_printed_as_a_refusal_with_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    reasons = [{"code": "unknown_order", "message": "no order web:NOPE is known"}]
    unknown = {"status": "invalid", "promise_date": None, "reasons": reasons, "details": {"refused": "x"}}
    sent = _answer(monkeypatch, unknown)
    result = CliRunner().invoke(app, argv)
    assert sent and result.exit_code == 1, result.output
    assert "refused: x for web:NOPE — unknown_order: no order web:NOPE is known" in result.output
    assert "-> invalid" not in result.output


def test_an_accepted_command_prints_the_new_state_with_exit_code_0(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, {"status": "cancelled", "reasons": [], "details": {}, "promise_date": None})
    result = CliRunner().invoke(app, ["order", "cancel", "web:W-1"])
    assert result.exit_code == 0 and "web:W-1 -> cancelled" in result.output and "refused" not in result.output


def test_the_demo_customers_after_the_first_substitute_wait_or_cancel_in_turn() -> None:
    from orderflow.demo import _choice

    offered = {"ship_partial": {"1": 0}, "substitute": {"1": ["SKU-0001"]}}
    assert [_choice(offered, i)["choice"] for i in range(4)] == ["substitute", "wait", "cancel", "substitute"]
    assert _choice(offered, 0)["substitute_sku"] == "SKU-0001" and _choice(offered, 1)["substitute_sku"] is None
    assert _choice({"substitute": {"1": []}}, 0)["choice"] == "wait"  # no substitute offered
