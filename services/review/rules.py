"""Review rules (handbook 2.2): pure checks of an accepted order against master data and policy.

Every rule is a small function returning a `RuleResult` with a stable rule id; `evaluate` runs all of
them together so the channel hears of every problem at once. No I/O, no clock, no ids: "today" and the
customer's open exposure are passed in.

Decisions:
- Per-line rules (`product`, `price`) give one `RuleResult` per order line, so each result has a single
  outcome; `inputs["line"]` names the line (`lines[0]`).
- Packaging surcharges are one `Charge` per order line (code `packaging:<name>`, the line and SKU in the
  description), so finance and a partial shipment can trace each amount to its line; zero surcharges
  give no charge line.
- `total_with_charges` = sum of quantity x unit price (recomputed, to cents) + charges; the credit rule
  counts this figure as "this order".
- Price thresholds are rounded to cents (half up) before comparing: list 9.99 at 7% max discount gives a
  floor of 9.29. Unit prices themselves are never rounded (an order is never silently changed).
- Rules that need a customer or product which is unknown pass with `inputs["skipped"]`; the `customer` /
  `product` rule already rejects the order for it.
- `requested_date` before today is infeasible for every product (lead time 0), not only make-to-order.
- Special requirements other than `packaging` and `notes` with a non-empty value cannot be judged by
  rules and go to the manual queue (`customisation_review`).
- Manual words match case-insensitively: an ASCII word matches a word of the notes that starts with it
  ("engraved", "logos"), except words in `Policy.manual_note_ignore` ("customer", "customs"); any other
  word (Chinese) matches as a substring.
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from contracts.common import Reason
from contracts.internal import ApprovedLine, OrderAccepted, OrderLine
from contracts.public import Charge, CustomerUpserted, ProductUpserted

__all__ = [
    "DEFAULT_POLICY",
    "Evaluation",
    "Policy",
    "PreviousRevision",
    "RuleResult",
    "check_credit",
    "check_currency",
    "check_customer",
    "check_customisation",
    "check_packaging",
    "check_payment_method",
    "check_price",
    "check_product",
    "check_requested_date",
    "check_revision",
    "check_total",
    "evaluate",
    "line_total",
    "money",
    "packaging_charges",
    "requested_packaging",
]

RuleOutcome = Literal["pass", "reject", "manual"]
ReviewOutcome = Literal["approved", "rejected", "in_review"]

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
_ASCII_WORD = re.compile(r"[a-z]+")
_KNOWN_REQUIREMENTS = frozenset({"packaging", "notes"})


@dataclass(frozen=True)
class Policy:
    """The tunable part of the review rules; `rule_set` is recorded as who decided."""

    credit_tolerance_pct: Decimal = Decimal("10")
    discount_tolerance_points: Decimal = Decimal("5")
    manual_note_words: tuple[str, ...] = (
        "custom",
        "customise",
        "customize",
        "logo",
        "engrave",
        "定制",
        "印字",
    )
    manual_note_ignore: tuple[str, ...] = ("customer", "customers", "customs")
    rule_set: str = "review-rules/1"


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class RuleResult:
    """What one rule decided, from which inputs, and why."""

    rule: str
    outcome: RuleOutcome
    inputs: dict[str, str]
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class PreviousRevision:
    """The last decided revision of the same order, to detect a major change."""

    revision: int
    unit_prices: dict[int, Decimal]  # line_no -> unit price
    payment_method: str
    total_amount: Decimal


@dataclass(frozen=True)
class Evaluation:
    """The combined decision of every rule for one order revision."""

    outcome: ReviewOutcome
    reasons: tuple[Reason, ...]  # every reject reason, or the manual-queue reasons when in_review
    results: tuple[RuleResult, ...]
    charges: tuple[Charge, ...]
    lines: tuple[ApprovedLine, ...]
    total_with_charges: Decimal
    decided_by: str = DEFAULT_POLICY.rule_set


# ---- helpers ----
def money(amount: Decimal) -> Decimal:
    """An amount rounded half up to cents."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _dec(value: float | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _norm(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a name or spec."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _result(rule: str, inputs: dict[str, str], reasons: Iterable[Reason], when_any: RuleOutcome) -> RuleResult:
    found = tuple(reasons)
    return RuleResult(rule, when_any if found else "pass", inputs, found)


def _skipped(rule: str, why: str, **inputs: str) -> RuleResult:
    return RuleResult(rule, "pass", {**inputs, "skipped": why})


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {}, False)


def line_total(lines: Iterable[OrderLine]) -> Decimal:
    """Sum of quantity x unit price over the lines, to cents."""
    return money(sum((line.quantity * line.unit_price for line in lines), Decimal(0)))


def requested_packaging(order: OrderAccepted) -> str | None:
    """The special packaging asked for, or None for none/empty/"standard"."""
    value = (order.special_requirements or {}).get("packaging")
    if _empty(value):
        return None
    text = str(value).strip()
    return None if text.casefold() == "standard" else text


# ---- customer and terms ----
def check_customer(order: OrderAccepted, customer: CustomerUpserted | None) -> RuleResult:
    """The customer must be known (`unknown_customer`) and not blocked (`customer_blocked`)."""
    path = "customer.customer_id"
    if customer is None:
        msg = f"customer {order.customer_id} is not in the customer master data"
        return _result(
            "customer",
            {"customer_id": order.customer_id, "status": "unknown"},
            [Reason(code="unknown_customer", field=path, message=msg)],
            "reject",
        )
    reasons = []
    if customer.status == "blocked":
        msg = f"customer {customer.customer_id} is blocked"
        reasons.append(Reason(code="customer_blocked", field=path, message=msg))
    return _result("customer", {"customer_id": customer.customer_id, "status": customer.status}, reasons, "reject")


def check_credit(
    order: OrderAccepted,
    customer: CustomerUpserted | None,
    open_exposure: Decimal,
    order_total: Decimal,
    policy: Policy = DEFAULT_POLICY,
) -> RuleResult:
    """Credit orders: balance + open orders + this order <= limit passes, <= limit + tolerance% is manual
    (`credit_review`), more is rejected (`credit_limit_exceeded`)."""
    if customer is None:
        return _skipped("credit", "unknown customer")
    if customer.payment_terms != "credit" and order.payment_method != "credit_terms":
        return _skipped(
            "credit",
            "not a credit order",
            payment_terms=customer.payment_terms,
            payment_method=order.payment_method,
        )
    limit = money(customer.credit_limit)
    ceiling = money(limit * (1 + policy.credit_tolerance_pct / HUNDRED))
    needed = money(customer.outstanding_balance + open_exposure + order_total)
    inputs = {
        "credit_limit": str(limit),
        "outstanding_balance": str(money(customer.outstanding_balance)),
        "open_exposure": str(money(open_exposure)),
        "order_total": str(money(order_total)),
        "needed": str(needed),
        "tolerance_ceiling": str(ceiling),
    }
    figures = (
        f"outstanding {inputs['outstanding_balance']} + open orders {inputs['open_exposure']} + this order "
        f"{inputs['order_total']} = {needed} {order.currency}"
    )
    if needed <= limit:
        return RuleResult("credit", "pass", inputs)
    if needed <= ceiling:
        tolerance = policy.credit_tolerance_pct
        msg = f"{figures} is over the credit limit {limit} but within {tolerance}%: needs review"
        return RuleResult("credit", "manual", inputs, (Reason(code="credit_review", field=None, message=msg),))
    msg = f"{figures} exceeds the credit limit {limit} by more than {policy.credit_tolerance_pct}% ({ceiling})"
    return RuleResult("credit", "reject", inputs, (Reason(code="credit_limit_exceeded", field=None, message=msg),))


def check_payment_method(order: OrderAccepted, customer: CustomerUpserted | None) -> RuleResult:
    """The payment method must be one the customer is allowed (`payment_method_not_allowed`), if listed."""
    if customer is None:
        return _skipped("payment_method", "unknown customer", payment_method=order.payment_method)
    allowed = customer.allowed_payment_methods
    inputs = {"payment_method": order.payment_method, "allowed": ",".join(allowed)}
    reasons = []
    if allowed and order.payment_method not in allowed:
        listed = ", ".join(allowed)
        msg = f"payment method {order.payment_method} is not allowed for this customer (allowed: {listed})"
        reasons.append(Reason(code="payment_method_not_allowed", field="payment_method", message=msg))
    return _result("payment_method", inputs, reasons, "reject")


def check_currency(order: OrderAccepted, customer: CustomerUpserted | None) -> RuleResult:
    """The order currency must be the customer's currency (`currency_mismatch`)."""
    if customer is None:
        return _skipped("currency", "unknown customer", currency=order.currency)
    inputs = {"currency": order.currency, "customer_currency": customer.currency}
    reasons = []
    if order.currency.strip().upper() != customer.currency.strip().upper():
        msg = f"order currency {order.currency} differs from the customer's currency {customer.currency}"
        reasons.append(Reason(code="currency_mismatch", field="currency", message=msg))
    return _result("currency", inputs, reasons, "reject")


# ---- lines ----
def check_product(index: int, line: OrderLine, product: ProductUpserted | None) -> RuleResult:
    """The line's SKU must be known (`unknown_sku`), not discontinued (`product_discontinued`), with a valid
    spec (`invalid_spec`) and the product's name (`product_name_mismatch`)."""
    path = f"lines[{index}]"
    inputs = {"line": path, "sku": line.sku, "spec": line.spec, "product_name": line.product_name}
    if product is None:
        msg = f"SKU {line.sku} is not in the product master data"
        return _result("product", inputs, [Reason(code="unknown_sku", field=f"{path}.sku", message=msg)], "reject")
    inputs |= {"status": product.status, "specs": ",".join(product.specs), "master_name": product.name}
    reasons = []
    if product.status == "discontinued":
        msg = f"SKU {line.sku} is discontinued"
        reasons.append(Reason(code="product_discontinued", field=f"{path}.sku", message=msg))
    if product.specs and _norm(line.spec) not in {_norm(s) for s in product.specs}:
        msg = f"spec {line.spec!r} is not a spec of {line.sku} (valid: {', '.join(product.specs)})"
        reasons.append(Reason(code="invalid_spec", field=f"{path}.spec", message=msg))
    if _norm(line.product_name) != _norm(product.name):
        msg = f"product name {line.product_name!r} does not match {line.sku} ({product.name!r})"
        reasons.append(Reason(code="product_name_mismatch", field=f"{path}.product_name", message=msg))
    return _result("product", inputs, reasons, "reject")


def check_price(
    index: int,
    line: OrderLine,
    product: ProductUpserted | None,
    customer: CustomerUpserted | None,
    policy: Policy = DEFAULT_POLICY,
) -> RuleResult:
    """A contract price must be matched exactly (`contract_price_mismatch`); otherwise price >= list less the
    maximum discount passes, >= list less (max + tolerance points) is manual (`discount_review`), lower is
    rejected (`price_below_policy`)."""
    path = f"lines[{index}]"
    base = {"line": path, "sku": line.sku, "unit_price": str(line.unit_price)}
    if product is None or customer is None:
        return _skipped("price", "unknown product" if product is None else "unknown customer", **base)
    field_path = f"{path}.unit_price"
    contract = customer.contract_prices.get(line.sku)
    if contract is not None:
        inputs = {**base, "basis": "contract", "contract_price": str(contract)}
        reasons = []
        if line.unit_price != contract:
            msg = f"unit price {line.unit_price} for {line.sku} differs from the contract price {contract}"
            reasons.append(Reason(code="contract_price_mismatch", field=field_path, message=msg))
        return _result("price", inputs, reasons, "reject")
    max_pct = _dec(customer.max_discount_pct)
    floor = money(product.list_price * (1 - max_pct / HUNDRED))
    review_floor = money(product.list_price * (1 - (max_pct + policy.discount_tolerance_points) / HUNDRED))
    inputs = {
        **base,
        "basis": "list",
        "list_price": str(product.list_price),
        "max_discount_pct": str(max_pct),
        "floor": str(floor),
        "review_floor": str(review_floor),
    }
    if line.unit_price >= floor:
        return RuleResult("price", "pass", inputs)
    discount = (
        f"unit price {line.unit_price} for {line.sku} is below list {product.list_price} less {max_pct}% ({floor})"
    )
    if line.unit_price >= review_floor:
        msg = f"{discount}, within {policy.discount_tolerance_points} points: needs review"
        return RuleResult("price", "manual", inputs, (Reason(code="discount_review", field=field_path, message=msg),))
    msg = f"{discount} and below the review floor {review_floor}"
    return RuleResult("price", "reject", inputs, (Reason(code="price_below_policy", field=field_path, message=msg),))


def check_total(order: OrderAccepted) -> RuleResult:
    """The order total must equal the sum of quantity x unit price (`total_mismatch`)."""
    computed = line_total(order.lines)
    inputs = {"total_amount": str(order.total_amount), "computed": str(computed)}
    reasons = []
    if computed != order.total_amount:
        msg = f"total {order.total_amount} differs from the sum of the lines {computed}"
        reasons.append(Reason(code="total_mismatch", field="total_amount", message=msg))
    return _result("total", inputs, reasons, "reject")


# ---- special requirements ----
def check_packaging(order: OrderAccepted, products: Mapping[str, ProductUpserted]) -> RuleResult:
    """Special packaging must be offered for every line's product (`unsupported_requirement`)."""
    raw = (order.special_requirements or {}).get("packaging")
    path = "special_requirements.packaging"
    if not _empty(raw) and not isinstance(raw, str):
        msg = f"packaging must be the name of a packaging option, not {raw!r}"
        return _result(
            "packaging",
            {"packaging": repr(raw)},
            [Reason(code="unsupported_requirement", field=path, message=msg)],
            "reject",
        )
    name = requested_packaging(order)
    if name is None:
        return RuleResult("packaging", "pass", {"packaging": "standard"})
    missing = sorted(
        {line.sku for line in order.lines if line.sku in products and name not in products[line.sku].packaging_options}
    )
    reasons = []
    if missing:
        msg = f"packaging {name!r} is not offered for {', '.join(missing)}"
        reasons.append(Reason(code="unsupported_requirement", field=path, message=msg))
    return _result("packaging", {"packaging": name, "unsupported_for": ",".join(missing)}, reasons, "reject")


def packaging_charges(order: OrderAccepted, products: Mapping[str, ProductUpserted]) -> tuple[Charge, ...]:
    """One surcharge per line whose product offers the requested packaging: surcharge per unit x quantity."""
    name = requested_packaging(order)
    if name is None:
        return ()
    charges = []
    for line in order.lines:
        product = products.get(line.sku)
        per_unit = product.packaging_options.get(name) if product is not None else None
        if per_unit is None or money(per_unit * line.quantity) == 0:
            continue
        description = f"packaging {name} for line {line.line_no} ({line.sku}): {line.quantity} x {per_unit}"
        charges.append(
            Charge(code=f"packaging:{name}", description=description, amount=money(per_unit * line.quantity))
        )
    return tuple(charges)


def _manual_words(notes: str, policy: Policy) -> list[str]:
    folded = unicodedata.normalize("NFKC", notes).casefold()
    ignore = {w.casefold() for w in policy.manual_note_ignore}
    words = [w for w in _ASCII_WORD.findall(folded) if w not in ignore]
    found = []
    for word in policy.manual_note_words:
        key = unicodedata.normalize("NFKC", word).casefold()
        hit = any(w.startswith(key) for w in words) if key.isascii() else key in folded
        if hit:
            found.append(word)
    return found


def check_customisation(order: OrderAccepted, policy: Policy = DEFAULT_POLICY) -> RuleResult:
    """Notes asking for customisation, or requirements the rules do not know, go to a person
    (`customisation_review`)."""
    special = order.special_requirements or {}
    notes = special.get("notes")
    text = "" if _empty(notes) else str(notes)
    hits = _manual_words(text, policy)
    reasons = []
    if hits:
        msg = f"notes ask for customisation ({', '.join(hits)}): needs review"
        reasons.append(Reason(code="customisation_review", field="special_requirements.notes", message=msg))
    others = sorted(k for k, v in special.items() if k not in _KNOWN_REQUIREMENTS and not _empty(v))
    for key in others:
        msg = f"special requirement {key!r} cannot be checked by rules: needs review"
        reasons.append(Reason(code="customisation_review", field=f"special_requirements.{key}", message=msg))
    inputs = {"manual_words": ",".join(hits), "other_requirements": ",".join(others)}
    return _result("customisation", inputs, reasons, "manual")


# ---- dates and revisions ----
def check_requested_date(order: OrderAccepted, products: Mapping[str, ProductUpserted], today: date) -> RuleResult:
    """The requested date must not be before today, nor before today + lead days of a make-to-order product
    (`date_not_feasible`)."""
    lead = {
        line.sku: products[line.sku].production_lead_days
        for line in order.lines
        if line.sku in products and products[line.sku].make_to_order
    }
    longest = max(lead.values(), default=0)
    earliest = today + timedelta(days=max(longest, 0))
    inputs = {
        "requested_date": order.requested_date.isoformat(),
        "today": today.isoformat(),
        "earliest": earliest.isoformat(),
        "lead_days": str(longest),
    }
    reasons = []
    if order.requested_date < earliest:
        late = sorted(sku for sku, days in lead.items() if order.requested_date < today + timedelta(days=days))
        why = f" ({', '.join(late)} made to order, {longest} days' lead time)" if late else " (in the past)"
        msg = f"requested date {order.requested_date} is before the earliest feasible date {earliest}{why}"
        reasons.append(Reason(code="date_not_feasible", field="requested_date", message=msg))
    return _result("requested_date", inputs, reasons, "reject")


def _major_changes(order: OrderAccepted, previous: PreviousRevision) -> list[str]:
    changes = [
        f"line {line.line_no} price {previous.unit_prices[line.line_no]} -> {line.unit_price}"
        for line in order.lines
        if line.line_no in previous.unit_prices and line.unit_price != previous.unit_prices[line.line_no]
    ]
    if order.payment_method != previous.payment_method:
        changes.append(f"payment method {previous.payment_method} -> {order.payment_method}")
    if order.total_amount != previous.total_amount:
        changes.append(f"total {previous.total_amount} -> {order.total_amount}")
    return changes


def check_revision(order: OrderAccepted, previous: PreviousRevision | None) -> RuleResult:
    """A revision changing a price, the payment method or the total needs the customer's written
    confirmation referenced (`confirmation_required`)."""
    if previous is None:
        return _skipped("revision", "no previous revision", revision=str(order.revision))
    changes = _major_changes(order, previous)
    ref = (order.customer_confirmation_ref or "").strip()
    inputs = {
        "revision": str(order.revision),
        "previous_revision": str(previous.revision),
        "changes": "; ".join(changes),
        "customer_confirmation_ref": ref,
    }
    reasons = []
    if changes and not ref:
        msg = (
            f"major change since revision {previous.revision} ({'; '.join(changes)}) needs the customer's "
            "written confirmation referenced in customer_confirmation_ref"
        )
        reasons.append(Reason(code="confirmation_required", field="customer_confirmation_ref", message=msg))
    return _result("revision", inputs, reasons, "reject")


# ---- all together ----
def _approved_line(line: OrderLine, product: ProductUpserted | None) -> ApprovedLine:
    if product is None:
        return ApprovedLine(line_no=line.line_no, sku=line.sku, quantity=line.quantity, unit_price=line.unit_price)
    return ApprovedLine(
        line_no=line.line_no,
        sku=line.sku,
        quantity=line.quantity,
        unit_price=line.unit_price,
        make_to_order=product.make_to_order,
        production_lead_days=product.production_lead_days,
        substitutes=list(product.substitutes),
    )


def _outcome(results: Iterable[RuleResult]) -> tuple[ReviewOutcome, tuple[Reason, ...]]:
    done = tuple(results)
    rejects = tuple(r for res in done if res.outcome == "reject" for r in res.reasons)
    if rejects:
        return "rejected", rejects
    manual = tuple(r for res in done if res.outcome == "manual" for r in res.reasons)
    return ("in_review", manual) if manual else ("approved", ())


def evaluate(
    order: OrderAccepted,
    customer: CustomerUpserted | None,
    products: dict[str, ProductUpserted],
    open_exposure: Decimal,
    previous: PreviousRevision | None,
    today: date,
    policy: Policy = DEFAULT_POLICY,
) -> Evaluation:
    """Run every rule together: reject if any rejects, else queue if any asks for a person, else approve."""
    charges = packaging_charges(order, products)
    total = line_total(order.lines) + sum((c.amount for c in charges), Decimal(0))
    results = (
        check_customer(order, customer),
        check_credit(order, customer, open_exposure, total, policy),
        check_payment_method(order, customer),
        check_currency(order, customer),
        *(check_product(i, line, products.get(line.sku)) for i, line in enumerate(order.lines)),
        *(check_price(i, line, products.get(line.sku), customer, policy) for i, line in enumerate(order.lines)),
        check_total(order),
        check_packaging(order, products),
        check_customisation(order, policy),
        check_requested_date(order, products, today),
        check_revision(order, previous),
    )
    outcome, reasons = _outcome(results)
    return Evaluation(
        outcome=outcome,
        reasons=reasons,
        results=results,
        charges=charges,
        lines=tuple(_approved_line(line, products.get(line.sku)) for line in order.lines),
        total_with_charges=money(total),
        decided_by=policy.rule_set,
    )
