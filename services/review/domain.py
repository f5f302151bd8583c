"""Review's decisions (handbook 2.2): approve, reject with reasons, or queue for a person."""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contracts import topics
from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderApproved, OrderCancelled
from contracts.public import CustomerUpserted, ProductUpserted, ReviewDecision
from services.review.rules import Evaluation, Policy, PreviousRevision, evaluate
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import status

CENT = Decimal("0.01")


def cents(amount: Decimal) -> int:
    """Money as integer cents, the unit of the atomic exposure counters."""
    return int((amount / CENT).to_integral_value())


@dataclass(frozen=True)
class Decision:
    """The order's new review state, its events, and the exposure it claims (cents) if approved."""

    state: dict[str, Any] | None
    outputs: list[Outgoing] = field(default_factory=list)
    outcome: str = "ignored"
    claim_cents: int | None = None


def _previous(state: dict[str, Any] | None) -> PreviousRevision | None:
    last = (state or {}).get("last_decided")
    if not last:
        return None
    return PreviousRevision(
        revision=last["revision"],
        unit_prices={int(k): Decimal(v) for k, v in last["unit_prices"].items()},
        payment_method=last["payment_method"],
        total_amount=Decimal(last["total_amount"]),
    )


def review(
    state: dict[str, Any] | None,
    order: OrderAccepted,
    customer: CustomerUpserted | None,
    products: dict[str, ProductUpserted],
    open_exposure_cents: int,
    now: datetime,
    policy: Policy,
) -> Decision:
    """Review one accepted revision from scratch against current master data and open exposure."""
    if state is not None and state.get("status") == "cancelled":
        return Decision(None, [], "ignored: order cancelled")
    if state is not None and order.revision <= state.get("revision", 0):
        return Decision(None, [], "ignored: revision already reviewed")
    today: date = now.date()
    ev = evaluate(order, customer, products, Decimal(open_exposure_cents) * CENT, _previous(state), today, policy)
    audit = _audit(ev, order.revision, ev.decided_by, now)
    base: dict[str, Any] = {
        "revision": order.revision,
        "order_number": order.order_number,
        "customer_id": order.customer_id,
        "status": ev.outcome,
        "audit": [*(state or {}).get("audit", []), audit][-50:],
        "last_decided": (state or {}).get("last_decided"),
    }
    cause = order.event_id
    approved = _approved_event(order, ev, customer)
    if ev.outcome == "in_review":
        base["queued"] = {
            "approved": approved.model_dump(mode="json"),
            "reasons": _dump(ev.reasons),
            "last_decided": _last_decided(order),
        }
        out = _status(cause, order, "in_review", now, ev.reasons, ev.decided_by)
        return Decision(base, [out], "in_review")
    base["last_decided"] = _last_decided(order)
    if ev.outcome == "rejected":
        out = _status(cause, order, "rejected", now, ev.reasons, ev.decided_by)
        return Decision(base, [out], f"rejected: {','.join(r.code for r in ev.reasons)}")
    base["exposure_cents"] = cents(ev.total_with_charges)
    outputs = [
        _status(cause, order, "approved", now, [], ev.decided_by, _approval_details(approved)),
        Outgoing.of(topics.ORDERS_APPROVED, approved.order_key, approved),
    ]
    return Decision(base, outputs, "approved", claim_cents=cents(ev.total_with_charges))


def decide_manual(state: dict[str, Any] | None, cmd: ReviewDecision, now: datetime) -> Decision:
    """A reviewer's decision on a queued order; refused with a reason when the order is not queued."""
    if state is None or state.get("status") != "in_review" or "queued" not in state:
        reason = Reason(
            code="not_in_review_queue",
            field="command_id",
            message=f"order is {state.get('status') if state else 'unknown to review'}, not in the review queue",
        )
        refused = status(
            cmd.command_id,
            cmd.channel,
            cmd.channel_order_ref,
            (state or {}).get("status", "received"),
            now,
            revision=(state or {}).get("revision"),
            order_number=(state or {}).get("order_number"),
            reasons=[reason],
            details={"refused": cmd.type},
            decided_by=cmd.issued_by,
        )
        return Decision(None, [refused], "refused: not in queue")
    approved = OrderApproved.model_validate(state["queued"]["approved"])
    new = {k: v for k, v in state.items() if k != "queued"}
    new["last_decided"] = state["queued"]["last_decided"]
    audit = {
        "revision": approved.revision,
        "decided_by": cmd.issued_by,
        "outcome": cmd.decision,
        "at": now.isoformat(),
        "reasons": cmd.reasons,
    }
    new["audit"] = [*state.get("audit", []), audit][-50:]
    if cmd.decision == "reject":
        new["status"] = "rejected"
        reasons = [Reason(code="reviewer_rejected", field=None, message=r) for r in cmd.reasons] or [
            Reason(code="reviewer_rejected", field=None, message="rejected by reviewer")
        ]
        out = status(
            cmd.command_id,
            cmd.channel,
            cmd.channel_order_ref,
            "rejected",
            now,
            revision=approved.revision,
            order_number=approved.order_number,
            reasons=reasons,
            decided_by=cmd.issued_by,
        )
        return Decision(new, [out], "rejected by reviewer")
    new["status"] = "approved"
    new["exposure_cents"] = cents(approved.total_amount)
    outputs = [
        status(
            cmd.command_id,
            cmd.channel,
            cmd.channel_order_ref,
            "approved",
            now,
            revision=approved.revision,
            order_number=approved.order_number,
            details=_approval_details(approved),
            decided_by=cmd.issued_by,
        ),
        Outgoing.of(
            topics.ORDERS_APPROVED,
            approved.order_key,
            approved.model_copy(update={"event_id": derive_id("approved", cmd.command_id)}),
        ),
    ]
    return Decision(new, outputs, "approved by reviewer", claim_cents=cents(approved.total_amount))


def on_cancelled(state: dict[str, Any] | None, event: OrderCancelled) -> Decision:
    """A cancelled order leaves the queue and stops counting against credit (released by the handler)."""
    new = {**(state or {"revision": event.revision}), "status": "cancelled"}
    new.pop("queued", None)
    return Decision(new, [], "cancelled")


def _approved_event(order: OrderAccepted, ev: Evaluation, customer: CustomerUpserted | None) -> OrderApproved:
    special = order.special_requirements or {}
    return OrderApproved(
        event_id=derive_id("approved", order.event_id),
        **order.identity(),
        customer_id=order.customer_id,
        vip=customer is not None and customer.tier == "vip",
        priority=order.priority,
        requested_date=order.requested_date,
        currency=order.currency,
        lines=list(ev.lines),
        charges=list(ev.charges),
        total_amount=ev.total_with_charges,
        packaging=special.get("packaging") if isinstance(special.get("packaging"), str) else None,
        notes=special.get("notes") if isinstance(special.get("notes"), str) else None,
    )


def _approval_details(approved: OrderApproved) -> dict[str, Any]:
    return {
        "charges": [c.model_dump(mode="json") for c in approved.charges],
        "total_amount": str(approved.total_amount),
    }


def _last_decided(order: OrderAccepted) -> dict[str, Any]:
    return {
        "revision": order.revision,
        "unit_prices": {str(line.line_no): str(line.unit_price) for line in order.lines},
        "payment_method": order.payment_method,
        "total_amount": str(order.total_amount),
    }


def _audit(ev: Evaluation, revision: int, decided_by: str, now: datetime) -> dict[str, Any]:
    return {
        "revision": revision,
        "decided_by": decided_by,
        "outcome": ev.outcome,
        "at": now.isoformat(),
        "rules": [
            {"rule": r.rule, "outcome": r.outcome, "inputs": r.inputs, "reasons": _dump(r.reasons)} for r in ev.results
        ],
    }


def _dump(reasons: Any) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in reasons]


def _status(
    cause: str,
    order: OrderAccepted,
    name: str,
    now: datetime,
    reasons: Any,
    by: str,
    details: dict[str, Any] | None = None,
) -> Outgoing:
    return status(
        cause,
        order.channel,
        order.channel_order_ref,
        name,
        now,
        revision=order.revision,
        order_number=order.order_number,
        reasons=list(reasons),
        details=details,
        decided_by=by,
    )


def exposure_of(credit: dict[str, Any] | None) -> tuple[int, dict[str, int]]:
    """A customer's open exposure total and per-order claims (cents) from their credit document."""
    return int((credit or {}).get("total", 0)), {k: int(v) for k, v in (credit or {}).get("orders", {}).items()}


def claim(credit: dict[str, Any] | None, number: str, amount: int) -> dict[str, Any]:
    """The credit document with the order's claim added; a claim the order already holds is kept as it is
    (a redelivery claims nothing twice)."""
    total, orders = exposure_of(credit)
    if number in orders:
        return {"total": total, "orders": orders}
    return {"total": total + amount, "orders": {**orders, number: amount}}


def release(credit: dict[str, Any] | None, number: str) -> tuple[dict[str, Any], int]:
    """The credit document without the order's claim, and the cents released (0 when it held none)."""
    total, orders = exposure_of(credit)
    amount = orders.pop(number, 0)
    return {"total": total - amount, "orders": orders}, amount
