"""Building `order.status` messages, the one answer every service gives the channel."""

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Protocol

from contracts import topics
from contracts.common import Reason
from contracts.public import OrderStatus
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing

# A status stays far below Kafka's 1 MB message limit whatever the input: a 1000-line order of garbage
# yields ~7000 reasons, which would make the answer unpublishable and stall the partition.
MAX_REASONS = 50
MAX_REASON_CHARS = 300


def bounded(reasons: list[Reason]) -> list[Reason]:
    """At most MAX_REASONS reasons of at most MAX_REASON_CHARS each; the last one says how many were left out."""
    listed = reasons if len(reasons) <= MAX_REASONS else reasons[: MAX_REASONS - 1]
    kept = [r.model_copy(update={"message": r.message[:MAX_REASON_CHARS]}) for r in listed]
    if len(listed) < len(reasons):
        more = f"{len(reasons) - len(listed)} more problems are not listed; correct these first."
        kept.append(Reason(code="more_reasons", field=None, message=more))
    return kept


def repeats_view(details: Mapping[str, Any]) -> bool:
    """Whether a status restates its sender's (possibly older) view instead of changing the order: the answer
    to a refused command or an ignored duplicate."""
    return bool(details.get("refused") or details.get("ignored"))


def enters_state(details: Mapping[str, Any]) -> bool:
    """Whether a status is a state change: neither a restated view nor a restated cancellation."""
    return not repeats_view(details) and not details.get("restated_after")


def order_key(channel: str, channel_order_ref: str) -> str:
    """The Kafka key of every message about one order."""
    return f"{channel}:{channel_order_ref}"


def status(
    cause: str,
    channel: str,
    channel_order_ref: str,
    status: str,
    now: datetime,
    *,
    revision: int | None = None,
    order_number: str | None = None,
    reasons: list[Reason] | None = None,
    promise_date: date | None = None,
    details: dict[str, Any] | None = None,
    decided_by: str | None = None,
) -> Outgoing:
    """An `order.status` on `orders.status`; its event id derives from the cause and the status."""
    message = OrderStatus(
        event_id=derive_id("status", cause, status),
        channel=channel,
        channel_order_ref=channel_order_ref,
        revision=revision,
        order_number=order_number,
        status=status,
        reasons=bounded(reasons) if reasons else [],
        promise_date=promise_date,
        details=details or {},
        occurred_at=now,
        decided_by=decided_by,
    )
    return Outgoing.of(topics.ORDERS_STATUS, order_key(channel, channel_order_ref), message)


class ChannelOrder(Protocol):
    """Anything that names an order by its channel and the channel's reference."""

    @property
    def channel(self) -> str: ...

    @property
    def channel_order_ref(self) -> str: ...


class NamesOrder(ChannelOrder, Protocol):
    """Anything that names an order at a revision: an internal event, or a service's state of the order."""

    @property
    def revision(self) -> int | None: ...

    @property
    def order_number(self) -> str | None: ...


def order_status(
    cause: str,
    order: NamesOrder,
    name: str,
    now: datetime,
    *,
    decided_by: str,
    reasons: list[Reason] | None = None,
    promise_date: date | None = None,
    details: dict[str, Any] | None = None,
) -> Outgoing:
    """`status` about `order`: its channel, reference, revision and number are taken from it."""
    return status(
        cause,
        order.channel,
        order.channel_order_ref,
        name,
        now,
        revision=order.revision,
        order_number=order.order_number,
        reasons=reasons,
        promise_date=promise_date,
        details=details,
        decided_by=decided_by,
    )


class OrderCommand(ChannelOrder, Protocol):
    """A command of `orders.commands`: which command, about which order, sent by whom."""

    @property
    def type(self) -> str: ...

    @property
    def command_id(self) -> str: ...

    @property
    def issued_by(self) -> str: ...


def unknown_order(cmd: OrderCommand, service: str, now: datetime) -> Outgoing:
    """The refusal of a command for an order `service` does not know: status `invalid`, reason `unknown_order`,
    `details.refused` naming the command. Record it on no document, so a later real order inherits nothing."""
    key = order_key(cmd.channel, cmd.channel_order_ref)
    why = Reason(code="unknown_order", field="channel_order_ref", message=f"no order {key} is known to {service}")
    return status(
        cmd.command_id,
        cmd.channel,
        cmd.channel_order_ref,
        "invalid",
        now,
        reasons=[why],
        details={"refused": cmd.type},
        decided_by=cmd.issued_by,
    )
