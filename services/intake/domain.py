"""Intake's decisions (handbook 2.1): hold what is unclear, number what is complete, never twice."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from contracts import topics
from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderShipping
from contracts.public import OrderSubmitted
from services.intake.checks import CheckedOrder, check_submission
from services.intake.store import IntakeOrder
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import order_key, status
from services.runtime.steps import Decision

DECIDED_BY = "intake-checks/1"


def identity(msg: OrderSubmitted) -> tuple[str, str] | None:
    """The channel and channel reference, when the submission names them (else it is not an order)."""
    channel, ref = msg.channel, msg.channel_order_ref
    if isinstance(channel, str) and channel and isinstance(ref, str) and ref.strip():
        return channel, ref
    return None


def submission_id(msg: OrderSubmitted) -> str:
    """The idempotency key of a submission: channel, reference and revision."""
    return f"submitted:{msg.channel}:{msg.channel_order_ref}:{msg.revision}"


def format_order_number(day: datetime, sequence: int) -> str:
    """`SO-YYYYMMDD-NNNNNN`: the acceptance date and that day's sequence number."""
    return f"SO-{day:%Y%m%d}-{sequence:06d}"


@dataclass(frozen=True, slots=True)
class Submission:
    """A readable `order.submitted` and the outcome of its checks, run once: the checked order, or why not."""

    msg: OrderSubmitted
    order: CheckedOrder | None
    reasons: tuple[Reason, ...]


def submission(msg: OrderSubmitted) -> Submission:
    """Run every completeness and consistency check of a submission once (for `needs_number` and `decide`)."""
    order, reasons = check_submission(msg)
    return Submission(msg, order, tuple(reasons))


def needs_number(state: IntakeOrder | None, sub: Submission) -> bool:
    """Whether accepting this submission needs a fresh order number (first complete revision)."""
    if state is not None and state.order_number:
        return False
    return sub.order is not None and _is_new_revision(state, sub.msg)


def _is_new_revision(state: IntakeOrder | None, msg: OrderSubmitted) -> bool:
    return state is None or not isinstance(msg.revision, int) or msg.revision > state.revision


def decide(state: IntakeOrder | None, sub: Submission, now: datetime, new_number: str | None) -> Decision[IntakeOrder]:
    """Apply one readable submission to the order's intake state: ignore an old revision, hold an unclear one,
    accept (and number, once) a complete one."""
    msg = sub.msg
    channel, ref = str(msg.channel), str(msg.channel_order_ref)
    cause = submission_id(msg)
    number = state.order_number if state else None
    if state is not None and isinstance(msg.revision, int) and msg.revision <= state.revision:
        if msg.revision == state.revision:
            return Decision(None, (), "duplicate revision")
        reason = Reason(
            code="stale_revision",
            field="revision",
            message=f"revision {msg.revision} is older than revision {state.revision} already received",
        )
        stale = status(
            cause,
            channel,
            ref,
            state.status,
            now,
            revision=msg.revision,
            order_number=number,
            reasons=[reason],
            details={"ignored": True},
            decided_by=DECIDED_BY,
        )
        return Decision(None, (stale,), "stale revision")
    checked, reasons = sub.order, list(sub.reasons)
    revision = msg.revision if isinstance(msg.revision, int) else (state.revision if state else 0)
    if checked is None:
        held = replace(state or IntakeOrder(revision, ""), revision=revision, status="needs_clarification")
        out = status(
            cause,
            channel,
            ref,
            "needs_clarification",
            now,
            revision=revision,
            order_number=number,
            reasons=reasons,
            decided_by=DECIDED_BY,
        )
        return Decision(held, (out,), f"held: {len(reasons)} reason(s)")
    number = number or new_number
    if number is None:
        raise ValueError("a complete first revision needs an order number")
    accepted = IntakeOrder(checked.revision, "received", number, now, checked)
    return Decision(accepted, _accepted_events(cause, checked, number, now), f"received {number}")


def _accepted_events(cause: str, order: CheckedOrder, number: str, now: datetime) -> tuple[Outgoing, ...]:
    key = order_key(order.channel, order.channel_order_ref)
    accepted = OrderAccepted(
        event_id=derive_id("accepted", cause),
        order_key=key,
        order_number=number,
        channel=order.channel,
        channel_order_ref=order.channel_order_ref,
        revision=order.revision,
        **order.terms(),
    )
    shipping = OrderShipping(event_id=derive_id("shipping", cause), ship_to=order.ship_to, **accepted.identity())
    received = status(
        cause,
        order.channel,
        order.channel_order_ref,
        "received",
        now,
        revision=order.revision,
        order_number=number,
        decided_by=DECIDED_BY,
    )
    return (
        received,
        Outgoing.of(topics.ORDERS_ACCEPTED, key, accepted),
        Outgoing.of(topics.ORDERS_SHIPPING, key, shipping),
    )


def invalid_status(raw: Mapping[str, object] | None, reason: str, cause: str, now: datetime) -> Outgoing | None:
    """An `invalid` status for an unreadable message, when a channel and reference can be read from it."""
    if raw is None:
        return None
    channel, ref = raw.get("channel"), raw.get("channel_order_ref")
    if not (isinstance(channel, str) and channel and isinstance(ref, str) and ref):
        return None
    why = Reason(code="unreadable", field=None, message=reason[:500])
    return status(cause, channel, ref, "invalid", now, reasons=[why], decided_by=DECIDED_BY)
