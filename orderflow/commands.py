"""`orderflow order ...`: customer service and supervisors act on an order through `orders.commands`, the
same public commands a channel or an ERP sends (cancel, review decision, shortage decision, priority
approval), validated against the contract before they are sent; then the status answering it is shown."""

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from contracts import registry, topics
from contracts.public import STATUSES, OrderCancel, PriorityApproval, ReviewDecision, ShortageDecision
from orderflow import bus, track
from services.runtime.ids import derive_id

Command = OrderCancel | ReviewDecision | ShortageDecision | PriorityApproval


class CommandError(ValueError):
    """A command that cannot be sent: unknown order, or fields the contract refuses (named in the message)."""


async def order_key(ref: str) -> str:
    """ "channel:channel_order_ref" as given, or looked up by order number in fulfillment's timeline."""
    ref = ref.strip()
    if ":" in ref:
        return ref
    timeline = await track.fetch(ref)
    if timeline is None:
        raise CommandError(f"no order {ref!r} known (give channel:channel_order_ref or an order number)")
    return str(timeline["order_key"])


def build(kind: str, key: str, issued_by: str, *, command_id: str | None = None, **fields: Any) -> Command:
    """The command `kind` for the order `key`, checked against the public contract as the services read it; a
    fresh command id unless one is given (a resubmitted form keeps its id, so it applies once)."""
    channel, _, ref = key.partition(":")
    raw = {
        "type": kind,
        "version": 1,
        "command_id": command_id or f"cli-{uuid.uuid4().hex}",
        "channel": channel,
        "channel_order_ref": ref,
        "issued_by": issued_by,
        "issued_at": datetime.now(UTC).isoformat(),
        **{k: v for k, v in fields.items() if v is not None},
    }
    try:
        command = registry.parse(topics.ORDERS_COMMANDS, json.dumps(raw).encode())
    except registry.UnreadableMessage as exc:
        raise CommandError(f"refused before sending: {exc.reason}") from None
    assert isinstance(command, Command)  # the registry reads only commands on this topic
    return command


def answer_ids(command_id: str) -> set[str]:
    """The event ids a status answering the command can have: each derives from the command id."""
    return {derive_id("status", command_id, s) for s in STATUSES}


async def send(bootstrap: str, command: Command, wait: float = 10.0) -> dict[str, Any] | None:
    """Publish the command under its order's key; with `wait`, return the status that answers it (the new
    state, or a refusal with its reason: its event id derives from the command id), None if none came in time."""
    key = f"{command.channel}:{command.channel_order_ref}"
    answers = answer_ids(command.command_id)
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS) if wait else {}
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.ORDERS_COMMANDS, [(key, command.model_dump(mode="json"))])
    if not wait:
        return None
    deadline = time.monotonic() + wait
    async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5):
        if msg.get("_key") == key and msg.get("event_id") in answers:
            return msg
        if time.monotonic() > deadline:
            break
    return None


def is_refusal(status: dict[str, Any] | None) -> bool:
    """Whether the answer refuses the command (`details.refused`): nothing was done to the order."""
    return status is not None and bool((status.get("details") or {}).get("refused"))


def describe(status: dict[str, Any] | None) -> str:
    """One line for the answer; a refusal says so first, with its reasons, and never reads as the order's new state."""
    if status is None:
        return "no answer yet on orders.status (the services may be busy or down); `orderflow track` shows it later"
    reasons = "; ".join(f"{r['code']}: {r['message']}" for r in status.get("reasons") or [])
    if is_refusal(status):
        return f"refused: {status['details']['refused']} for {status['_key']}" + (f" — {reasons}" if reasons else "")
    promise = f", promise {status['promise_date']}" if status.get("promise_date") else ""
    return f"{status['_key']} -> {status['status']}{promise}" + (f" — {reasons}" if reasons else "")
