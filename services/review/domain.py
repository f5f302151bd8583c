"""Review's decisions (handbook 2.2): approve, reject with reasons, or queue for a person.

Pure: every function takes the order's state and its customer's credit exposure (`OrderCredit`), the message
and the time, and returns a `Decision(new_state, events)`; nothing given is changed (unchanged parts of the new
state are the very objects given).
"""

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from contracts import topics
from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderApproved, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review.rules import Evaluation, Policy, PreviousRevision, evaluate
from services.review.store import AuditEntry, Credit, Queued, ReviewOrder
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import order_key, order_status, status, unknown_order
from services.runtime.steps import Decision

CENT = Decimal("0.01")
AUDIT_LIMIT = 50


def cents(amount: Decimal) -> int:
    """Money as integer cents, the unit of the atomic exposure counters."""
    return int((amount / CENT).to_integral_value())


@dataclass(frozen=True, slots=True)
class OrderCredit:
    """What one review decision reads and changes together: the order's review state (None: unknown to review)
    and its customer's credit exposure (None: not needed by this decision)."""

    order: ReviewOrder | None
    credit: Credit | None = None


# ---- credit exposure ----
def claim(credit: Credit, number: str, amount: int) -> Credit:
    """The exposure with the order's claim added; a claim the order already holds is kept as it is (a redelivery
    claims nothing twice)."""
    if number in credit.orders:
        return credit
    return Credit(credit.total + amount, {**credit.orders, number: amount})


def release(credit: Credit, number: str) -> tuple[Credit, int]:
    """The exposure without the order's claim, and the cents released (0 when it held none)."""
    if number not in credit.orders:
        return credit, 0
    amount = credit.orders[number]
    return Credit(credit.total - amount, {k: v for k, v in credit.orders.items() if k != number}), amount


def on_invoiced(credit: Credit | None, invoice: InvoiceRequested) -> Decision[Credit]:
    """An invoiced order no longer counts against its customer's credit (it is on the balance feed now)."""
    after, released = release(credit or Credit(), invoice.order_number)
    return Decision(after, (), f"invoiced {invoice.order_number}: released {released} cents")


# ---- the rules' review of an accepted revision ----
def review(
    current: OrderCredit,
    order: OrderAccepted,
    customer: CustomerUpserted | None,
    products: dict[str, ProductUpserted],
    now: datetime,
    policy: Policy,
) -> Decision[OrderCredit]:
    """Review one accepted revision from scratch against current master data and open exposure. An amendment of
    an approved order gives its claim back first; so does a cancelled order whose claim an interrupted batch
    left behind."""
    state, credit = current.order, current.credit or Credit()
    number = order.order_number or order.order_key
    if state is not None and (
        state.status == "cancelled" or (state.status == "approved" and order.revision > state.revision)
    ):
        credit, _ = release(credit, number)
    if state is not None and state.status == "cancelled":
        return Decision(OrderCredit(state, credit), (), "ignored: order cancelled")
    if state is not None and order.revision <= state.revision:
        return Decision(OrderCredit(state, credit), (), "ignored: revision already reviewed")
    open_exposure = Decimal(credit.total - credit.orders.get(number, 0)) * CENT
    previous = state.last_decided if state else None
    ev = evaluate(order, customer, products, open_exposure, previous, now.date(), policy)
    audit = AuditEntry(order.revision, ev.decided_by, ev.outcome, now, rules=ev.results)
    base = ReviewOrder(
        revision=order.revision,
        status=ev.outcome,
        order_number=order.order_number,
        customer_id=order.customer_id,
        audit=(*(state.audit if state else ()), audit)[-AUDIT_LIMIT:],
        last_decided=previous,
    )
    approved = _approved_event(order, ev, customer)
    by, reasons = ev.decided_by, list(ev.reasons)
    if ev.outcome == "in_review":
        queued = replace(base, queued=Queued(approved, ev.reasons, _last_decided(order)))
        out = order_status(order.event_id, order, "in_review", now, reasons=reasons, decided_by=by)
        return Decision(OrderCredit(queued, credit), (out,), f"in_review {number}")
    if ev.outcome == "rejected":
        rejected = replace(base, last_decided=_last_decided(order))
        out = order_status(order.event_id, order, "rejected", now, reasons=reasons, decided_by=by)
        return Decision(OrderCredit(rejected, credit), (out,), f"rejected: {_codes(ev.reasons)} {number}")
    amount = cents(ev.total_with_charges)
    accepted = replace(base, last_decided=_last_decided(order), exposure_cents=amount)
    events = (
        order_status(order.event_id, order, "approved", now, decided_by=by, details=_approval_details(approved)),
        Outgoing.of(topics.ORDERS_APPROVED, approved.order_key, approved),
    )
    return Decision(OrderCredit(accepted, claim(credit, number, amount)), events, f"approved {number}")


# ---- a reviewer's decision ----
def decide_manual(current: OrderCredit, cmd: ReviewDecision, now: datetime) -> Decision[OrderCredit]:
    """A reviewer's decision on a queued order. Refused with a reason when review knows no such order
    (`unknown_order`) or the order is not queued (`not_in_review_queue`); a refusal changes nothing."""
    state = current.order
    if state is None:
        return Decision(current, (unknown_order(cmd, "review", now),), "refused: unknown order")
    if state.status != "in_review" or state.queued is None:
        reason = Reason(
            code="not_in_review_queue",
            field="command_id",
            message=f"order is {state.status}, not in the review queue",
        )
        refused = status(
            cmd.command_id,
            cmd.channel,
            cmd.channel_order_ref,
            state.status,
            now,
            revision=state.revision,
            order_number=state.order_number,
            reasons=[reason],
            details={"refused": cmd.type},
            decided_by=cmd.issued_by,
        )
        return Decision(current, (refused,), "refused: not in queue")
    approved = state.queued.approved
    audit = AuditEntry(approved.revision, cmd.issued_by, cmd.decision, now, reasons=tuple(cmd.reasons))
    decided = replace(
        state, queued=None, last_decided=state.queued.last_decided, audit=(*state.audit, audit)[-AUDIT_LIMIT:]
    )
    if cmd.decision == "reject":
        why = cmd.reasons or ["rejected by reviewer"]
        reasons = [Reason(code="reviewer_rejected", field=None, message=r) for r in why]
        out = order_status(cmd.command_id, approved, "rejected", now, reasons=reasons, decided_by=cmd.issued_by)
        rejected = OrderCredit(replace(decided, status="rejected"), current.credit)
        return Decision(rejected, (out,), "rejected by reviewer")
    amount = cents(approved.total_amount)
    number = state.order_number or order_key(cmd.channel, cmd.channel_order_ref)
    details = _approval_details(approved)
    events = (
        order_status(cmd.command_id, approved, "approved", now, details=details, decided_by=cmd.issued_by),
        Outgoing.of(
            topics.ORDERS_APPROVED,
            approved.order_key,
            approved.model_copy(update={"event_id": derive_id("approved", cmd.command_id)}),
        ),
    )
    new = OrderCredit(
        replace(decided, status="approved", exposure_cents=amount), claim(current.credit or Credit(), number, amount)
    )
    return Decision(new, events, "approved by reviewer")


# ---- cancellation ----
def on_cancelled(current: OrderCredit, event: OrderCancelled) -> Decision[OrderCredit]:
    """A cancelled order leaves the queue and gives back the exposure it claims."""
    state = current.order
    cancelled = replace(state, status="cancelled", queued=None) if state else ReviewOrder(event.revision, "cancelled")
    credit = current.credit
    if state is not None and credit is not None:
        credit, _ = release(credit, state.order_number or event.order_key)
    return Decision(OrderCredit(cancelled, credit), (), "cancelled: exposure released")


# ---- helpers ----
def _codes(reasons: tuple[Reason, ...]) -> str:
    return ",".join(r.code for r in reasons)


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


def _approval_details(approved: OrderApproved) -> dict[str, object]:
    return {
        "charges": [c.model_dump(mode="json") for c in approved.charges],
        "total_amount": str(approved.total_amount),
    }


def _last_decided(order: OrderAccepted) -> PreviousRevision:
    return PreviousRevision(
        revision=order.revision,
        unit_prices={line.line_no: line.unit_price for line in order.lines},
        payment_method=order.payment_method,
        total_amount=order.total_amount,
    )
