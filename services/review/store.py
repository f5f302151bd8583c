"""The only code that knows review's documents: their typed state, their keys, and how they are stored.

Five kinds of document in review's collection: `order:<channel>:<ref>` (a `ReviewOrder`, which also holds the
cents the order claims on its customer's credit), `number:<order number>` (the order key of a numbered order
that has claimed credit, written once, so that an invoice, which names only the number, finds the claim),
`customer:<id>` and `product:<sku>` (the latest master data, as received: the durable copy; reviews read it
from memory, services.review.masterdata), and `credit:<customer>` (a `Credit`:
the customer's exposure total and the operations of batches still in flight, of bounded size whatever the
number of open orders; docs/adr/0006). The credit documents are written
before the order documents: the write is version-guarded, so a replica that raced another retries its batch
before any approval is stored, and a batch interrupted between the two writes finds, when replayed, what its
first attempt applied (`Credit.ops`), so `total` stays equal to the sum of the open approved orders' claims.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection

from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderApproved, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review.rules import PreviousRevision, RuleOutcome, RuleResult
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.outbox import Store
from services.runtime.status import order_key
from services.runtime.steps import Decision, Kind, Loaded, load, prefetch_linked, save

Collection = AsyncCollection[dict[str, Any]]
# The key scheme: a document's key is its kind's prefix and the identity (ORDERS.key("web:W-1") = "order:web:W-1").
ORDER = "order:"
CUSTOMER = "customer:"
PRODUCT = "product:"
CREDIT = "credit:"
NUMBER = "number:"


@dataclass(frozen=True, slots=True)
class Op:
    """What one input changed on a customer's credit: the order it concerns, the cents it added to the total
    (negative: released), and the consumed record it came from (source "topic:partition", offset)."""

    number: str
    delta: int
    source: str
    offset: int


@dataclass(frozen=True, slots=True)
class Credit:
    """A customer's open credit exposure: the total cents claimed by its open approved orders (each order's
    claim is on its own document), and the operations of batches that may not have written their orders yet
    (by input id), so that a replayed batch neither claims twice nor loses a claim."""

    total: int = 0
    ops: Mapping[str, Op] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision on one revision: by the rules (their results) or by a reviewer (their reasons)."""

    revision: int
    decided_by: str
    outcome: str
    at: datetime
    rules: tuple[RuleResult, ...] | None = None
    reasons: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """An order waiting for a reviewer: the approval it gets if approved, why it waits, and what it was."""

    approved: OrderApproved
    reasons: tuple[Reason, ...]
    last_decided: PreviousRevision


@dataclass(frozen=True, slots=True)
class ReviewOrder:
    """Review's view of one order: its last reviewed revision and status, the audit trail, the revision last
    decided (to spot a major change), the queue entry while in review, and the cents it claims on its
    customer's credit (0: none)."""

    revision: int
    status: str
    order_number: str | None = None
    customer_id: str | None = None
    audit: tuple[AuditEntry, ...] = ()
    last_decided: PreviousRevision | None = None
    queued: Queued | None = None
    claim: int = 0


# ---- stored forms (JSON types only) ----
def credit_to_doc(credit: Credit) -> dict[str, Any]:
    """The stored form of a customer's exposure (FerretDB: no nested arrays, so each op is a small object)."""
    ops = {k: {"n": o.number, "d": o.delta, "s": o.source, "o": o.offset} for k, o in credit.ops.items()}
    return {"total": credit.total, "ops": ops}


def credit_from_doc(doc: Mapping[str, Any]) -> Credit:
    """A customer's exposure as stored."""
    ops = {k: Op(str(o["n"]), int(o["d"]), str(o["s"]), int(o["o"])) for k, o in doc.get("ops", {}).items()}
    return Credit(int(doc.get("total", 0)), ops)


def _previous_to_doc(last: PreviousRevision) -> dict[str, Any]:
    return {
        "revision": last.revision,
        "unit_prices": {str(line_no): str(price) for line_no, price in last.unit_prices.items()},
        "payment_method": last.payment_method,
        "total_amount": str(last.total_amount),
    }


def _previous_from_doc(doc: Mapping[str, Any]) -> PreviousRevision:
    return PreviousRevision(
        revision=int(doc["revision"]),
        unit_prices={int(k): Decimal(v) for k, v in doc["unit_prices"].items()},
        payment_method=doc["payment_method"],
        total_amount=Decimal(doc["total_amount"]),
    )


def _reasons_to_doc(reasons: Iterable[Reason]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in reasons]


def _reasons_from_doc(docs: Iterable[Mapping[str, Any]]) -> tuple[Reason, ...]:
    return tuple(Reason(code=r["code"], field=r.get("field"), message=r["message"]) for r in docs)


def _audit_to_doc(entry: AuditEntry) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "revision": entry.revision,
        "decided_by": entry.decided_by,
        "outcome": entry.outcome,
        "at": entry.at.isoformat(),
    }
    if entry.rules is not None:
        doc["rules"] = [
            {"rule": r.rule, "outcome": r.outcome, "inputs": r.inputs, "reasons": _reasons_to_doc(r.reasons)}
            for r in entry.rules
        ]
    if entry.reasons is not None:
        doc["reasons"] = list(entry.reasons)
    return doc


def _audit_from_doc(doc: Mapping[str, Any]) -> AuditEntry:
    rules, reasons = doc.get("rules"), doc.get("reasons")
    return AuditEntry(
        revision=int(doc["revision"]),
        decided_by=doc["decided_by"],
        outcome=doc["outcome"],
        at=datetime.fromisoformat(doc["at"]),
        rules=None
        if rules is None
        else tuple(
            RuleResult(r["rule"], cast(RuleOutcome, r["outcome"]), dict(r["inputs"]), _reasons_from_doc(r["reasons"]))
            for r in rules
        ),
        reasons=None if reasons is None else tuple(reasons),
    )


def order_to_doc(state: ReviewOrder) -> dict[str, Any]:
    """The stored form of an order's review state."""
    doc: dict[str, Any] = {
        "revision": state.revision,
        "order_number": state.order_number,
        "customer_id": state.customer_id,
        "status": state.status,
        "audit": [_audit_to_doc(a) for a in state.audit],
        "last_decided": None if state.last_decided is None else _previous_to_doc(state.last_decided),
    }
    if state.queued is not None:
        doc["queued"] = {
            "approved": state.queued.approved.model_dump(mode="json"),
            "reasons": _reasons_to_doc(state.queued.reasons),
            "last_decided": _previous_to_doc(state.queued.last_decided),
        }
    if state.claim:
        doc["claim"] = state.claim
    return doc


def order_from_doc(doc: Mapping[str, Any]) -> ReviewOrder:
    """An order's review state as stored."""
    queued, last = doc.get("queued"), doc.get("last_decided")
    return ReviewOrder(
        revision=int(doc.get("revision", 0)),
        status=doc["status"],
        order_number=doc.get("order_number"),
        customer_id=doc.get("customer_id"),
        audit=tuple(_audit_from_doc(a) for a in doc.get("audit", [])),
        last_decided=_previous_from_doc(last) if last else None,
        queued=None
        if queued is None
        else Queued(
            OrderApproved.model_validate(queued["approved"]),
            _reasons_from_doc(queued["reasons"]),
            _previous_from_doc(queued["last_decided"]),
        ),
        claim=int(doc.get("claim", 0)),
    )


def _master_data_to_doc(record: CustomerUpserted | ProductUpserted) -> dict[str, Any]:
    return record.model_dump(mode="json")


ORDERS: Kind[ReviewOrder] = Kind(ORDER, order_from_doc, order_to_doc)
CREDITS: Kind[Credit] = Kind(CREDIT, credit_from_doc, credit_to_doc)
NUMBERS: Kind[str] = Kind(NUMBER, lambda doc: str(doc["order"]), lambda key: {"order": key})
CUSTOMERS: Kind[CustomerUpserted] = Kind(CUSTOMER, CustomerUpserted.model_validate, _master_data_to_doc)
PRODUCTS: Kind[ProductUpserted] = Kind(PRODUCT, ProductUpserted.model_validate, _master_data_to_doc)


def keys(msg: BaseModel, rec: Incoming | None = None) -> list[str]:
    """The documents a message touches, loaded together with its batch."""
    if isinstance(msg, CustomerUpserted):
        return [CUSTOMERS.key(msg.customer_id)]
    if isinstance(msg, ProductUpserted):
        return [PRODUCTS.key(msg.sku)]
    if isinstance(msg, OrderAccepted):
        numbered = [NUMBERS.key(msg.order_number)] if msg.order_number else []
        return [*numbered, ORDERS.key(msg.order_key), CREDITS.key(msg.customer_id)]  # master data: in memory
    if isinstance(msg, InvoiceRequested):
        return [NUMBERS.key(msg.order_number), CREDITS.key(msg.customer_id)]  # then the order the number names
    if isinstance(msg, OrderCancelled):
        return [ORDERS.key(msg.order_key)]
    if isinstance(msg, ReviewDecision):
        return [ORDERS.key(order_key(msg.channel, msg.channel_order_ref))]
    return []


# ---- recording a decision ----
# (credit, held, target): the credit once an order's claim on it goes from `held` to `target` cents (None: unchanged)
Settle = Callable[[Credit, int, int], Credit | None]


def held_on(state: ReviewOrder | None, customer_id: str | None) -> int:
    """The cents the order's document says it holds on `customer_id`'s credit (0: none)."""
    return state.claim if state is not None and state.customer_id == customer_id else 0


async def record(
    batch: Batch,
    order: Loaded[ReviewOrder],
    cause: str,
    decision: Decision[ReviewOrder],
    settle: Settle,
    also: str | None = None,
) -> str:
    """Record a decision on an order for the input `cause`: move its claim on each credit it touches (the one it
    held, the one it holds now, and `also`, where an interrupted attempt may have left a change) from what it
    held to what it holds, as `settle` says (once per input); give a numbered order that claims its `number:`
    document (inserted once); then record the order's new state with the events and `cause` in its inbox. The
    credits are written before the order. Returns the decision's outcome."""
    before, after = order.state, decision.new_state or order.state
    customers = {c for c in (before and before.customer_id, after and after.customer_id) if c}
    for cid in sorted(customers | ({also} if also else set())):
        held, target = held_on(before, cid), held_on(after, cid)
        if cid != also and held == target == 0:
            continue  # nothing held or claimed, so no earlier attempt of this input changed this credit
        credit = await load(batch, CREDITS, cid)
        current = credit.state or Credit()
        settled = settle(current, held, target)
        if settled is not None and settled != current:
            save(batch, credit, None, Decision(settled))
    if after is not None and after.claim and after.order_number:
        numbered = await load(batch, NUMBERS, after.order_number)
        if numbered.state is None:
            save(batch, numbered, None, Decision(order.key.removeprefix(ORDER)))
    return save(batch, order, cause, decision)


# ---- the collection and read helpers ----
async def prefetch_numbered_orders(batch: Batch) -> None:
    """Load in one round trip, once per batch, the orders that the number documents loaded with it name (its
    invoice requests')."""
    await prefetch_linked(batch, NUMBERS, ORDERS.key)


async def exposures(docs: Store) -> dict[str, tuple[int, dict[str, int]]]:
    """Every customer's exposure total as stored on its credit document, and the claims its open orders hold
    (order number -> cents) as stored on their order documents (reads the whole collection: checks and tools)."""
    out: dict[str, tuple[int, dict[str, int]]] = {}
    for key, state in (await docs.scan(CREDIT)).items():
        out[key.removeprefix(CREDIT)] = (credit_from_doc(state).total if state else 0, {})
    for key, state in (await docs.scan(ORDER)).items():
        order = order_from_doc(state) if state else None
        if order is not None and order.claim and order.customer_id:
            claims = out.setdefault(order.customer_id, (0, {}))[1]
            claims[order.order_number or key.removeprefix(ORDER)] = order.claim
    return out


async def exposure(docs: Store, customer_id: str) -> tuple[int, dict[str, int]]:
    """The customer's open exposure total and its open orders' claims (cents), as last written."""
    return (await exposures(docs)).get(customer_id, (0, {}))
