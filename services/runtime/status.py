"""Building `order.status` messages, the one answer every service gives the channel."""

from datetime import date, datetime
from typing import Any

from contracts import topics
from contracts.common import Reason
from contracts.public import OrderStatus
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing


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
        reasons=reasons or [],
        promise_date=promise_date,
        details=details or {},
        occurred_at=now,
        decided_by=decided_by,
    )
    return Outgoing.of(topics.ORDERS_STATUS, order_key(channel, channel_order_ref), message)
