"""Review's decisions (handbook 2.2): approve, reject with reasons, or queue for a person.

Pure: every function takes the order's state (its `claim` is the cents it holds on its customer's credit), the
message and the time, and returns a `Decision(new_state, events)`; `settle` moves a claim on a customer's
credit exactly once per input. Nothing given is changed (unchanged parts of the new state are the very objects
given).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from contracts import topics
from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderApproved, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review.rules import Evaluation, Policy, PreviousRevision, evaluate
from services.review.store import AuditEntry, Credit, Op, Queued, ReviewOrder
from services.runtime.ids import derive_id
from services.runtime.messages import Outgoing
from services.runtime.status import order_status, status, unknown_order
from services.runtime.steps import Decision

CENT = Decimal("0.01")
AUDIT_LIMIT = 50


def cents(amount: Decimal) -> int:
    """Money as integer cents, the unit of the atomic exposure counters."""
    return int((amount / CENT).to_integral_value())


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input was consumed ("topic:partition", offset) and, per source, the first offset of the latest
    batch this process began there: every record before it had its documents written (a partition is consumed
    in order, and a batch begins at the committed offset or right after a batch that completed)."""

    source: str
    offset: int
    completed_before: Mapping[str, int] = field(default_factory=dict)


# ---- credit exposure ----
def counted(credit: Credit, cause: str, held: int) -> int:
    """The cents an order counts for in its customer's total now: the claim its document holds plus what an
    interrupted earlier attempt of the same input (`cause`) already applied to the credit."""
    op = credit.ops.get(cause)
    return held + (op.delta if op is not None else 0)


def settle(credit: Credit, cause: str, number: str, held: int, target: int, at: Source) -> Credit | None:
    """The credit once the order's claim goes from what its document holds (`held`) to `target`, applied once
    whatever an interrupted attempt of `cause` already did (it is recorded under `cause`, and later attempts
    correct it instead of adding to it); None when nothing changes. Operations whose batch has completed are
    dropped (`at.completed_before`), so the record holds only batches still in flight: bounded by the batch
    size times the partitions, never by the customer's open orders."""
    now = counted(credit, cause, held)
    previous = credit.ops.get(cause)
    if now == target and previous is None:
        return None
    ops = {
        k: o for k, o in credit.ops.items() if k != cause and o.offset >= at.completed_before.get(o.source, o.offset)
    }
    if target != held:
        ops[cause] = Op(number, target - held, at.source, at.offset)
    return Credit(credit.total - now + target, ops)


# ---- the rules' review of an accepted revision ----
def review(
    state: ReviewOrder | None,
    order: OrderAccepted,
    customer: CustomerUpserted | None,
    products: dict[str, ProductUpserted],
    others_cents: int,
    now: datetime,
    policy: Policy,
) -> Decision[ReviewOrder]:
    """Review one accepted revision from scratch against current master data and the exposure of the
    customer's other open orders (`others_cents`). The new state's `claim` is what the order holds afterwards:
    an amendment replaces the claim of the approved revision (0 unless approved again); a cancelled order or
    an old revision keeps what it holds."""
    number = order.order_number or order.order_key
    if state is not None and state.status == "cancelled":
        return Decision(state, (), "ignored: order cancelled")
    if state is not None and order.revision <= state.revision:
        return Decision(state, (), "ignored: revision already reviewed")
    open_exposure = Decimal(others_cents) * CENT
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
        return Decision(queued, (out,), f"in_review {number}")
    if ev.outcome == "rejected":
        rejected = replace(base, last_decided=_last_decided(order))
        out = order_status(order.event_id, order, "rejected", now, reasons=reasons, decided_by=by)
        return Decision(rejected, (out,), f"rejected: {_codes(ev.reasons)} {number}")
    amount = cents(ev.total_with_charges)
    accepted = replace(base, last_decided=_last_decided(order), claim=amount)
    events = (
        order_status(order.event_id, order, "approved", now, decided_by=by, details=_approval_details(approved)),
        Outgoing.of(topics.ORDERS_APPROVED, approved.order_key, approved),
    )
    return Decision(accepted, events, f"approved {number}")


# ---- a reviewer's decision ----
def decide_manual(state: ReviewOrder | None, cmd: ReviewDecision, now: datetime) -> Decision[ReviewOrder]:
    """A reviewer's decision on a queued order; an approval claims the order's total. Refused with a reason
    when review knows no such order (`unknown_order`) or the order is not queued (`not_in_review_queue`); a
    refusal changes nothing."""
    if state is None:
        return Decision(None, (unknown_order(cmd, "review", now),), "refused: unknown order")
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
        return Decision(None, (refused,), "refused: not in queue")
    approved = state.queued.approved
    audit = AuditEntry(approved.revision, cmd.issued_by, cmd.decision, now, reasons=tuple(cmd.reasons))
    decided = replace(
        state, queued=None, last_decided=state.queued.last_decided, audit=(*state.audit, audit)[-AUDIT_LIMIT:]
    )
    if cmd.decision == "reject":
        why = cmd.reasons or ["rejected by reviewer"]
        reasons = [Reason(code="reviewer_rejected", field=None, message=r) for r in why]
        out = order_status(cmd.command_id, approved, "rejected", now, reasons=reasons, decided_by=cmd.issued_by)
        return Decision(replace(decided, status="rejected"), (out,), "rejected by reviewer")
    details = _approval_details(approved)
    events = (
        order_status(cmd.command_id, approved, "approved", now, details=details, decided_by=cmd.issued_by),
        Outgoing.of(
            topics.ORDERS_APPROVED,
            approved.order_key,
            approved.model_copy(update={"event_id": derive_id("approved", cmd.command_id)}),
        ),
    )
    return Decision(
        replace(decided, status="approved", claim=cents(approved.total_amount)), events, "approved by reviewer"
    )


# ---- cancellation and invoicing ----
def on_cancelled(state: ReviewOrder | None, event: OrderCancelled) -> Decision[ReviewOrder]:
    """A cancelled order leaves the queue and gives back the exposure it claims."""
    cancelled = (
        replace(state, status="cancelled", queued=None, claim=0) if state else ReviewOrder(event.revision, "cancelled")
    )
    return Decision(cancelled, (), "cancelled: exposure released")


def on_invoiced(state: ReviewOrder, invoice: InvoiceRequested) -> Decision[ReviewOrder]:
    """An invoiced order no longer counts against its customer's credit (it is on the balance feed now)."""
    return Decision(replace(state, claim=0), (), f"invoiced {invoice.order_number}: released {state.claim} cents")


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
