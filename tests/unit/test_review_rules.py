"""Review rules (handbook 2.2): one test per rule and reason code, with the boundaries."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.common import Reason
from contracts.internal import OrderAccepted, OrderLine
from contracts.public import CustomerUpserted, ProductUpserted
from services.review.rules import (
    DEFAULT_POLICY,
    Evaluation,
    Policy,
    PreviousRevision,
    RuleResult,
    check_credit,
    check_customisation,
    check_price,
    evaluate,
    line_total,
    money,
    packaging_charges,
    requested_packaging,
)

TODAY = date(2026, 11, 27)
D = Decimal


def customer(**overrides: Any) -> CustomerUpserted:
    data: dict[str, Any] = {
        "type": "customer.upserted",
        "version": 1,
        "customer_id": "C-1001",
        "name": "Hangzhou Lighting Co.",
        "status": "active",
        "payment_terms": "credit",
        "credit_limit": D("10000.00"),
        "outstanding_balance": D("0"),
        "currency": "CNY",
        "allowed_payment_methods": ["credit_terms", "bank_transfer"],
        "contract_prices": {},
        "max_discount_pct": 10.0,
    }
    return CustomerUpserted.model_validate(data | overrides)


def product(sku: str = "LED-A60-9W", **overrides: Any) -> ProductUpserted:
    data: dict[str, Any] = {
        "type": "product.upserted",
        "version": 1,
        "sku": sku,
        "name": "LED bulb A60 9W",
        "specs": ["E27/3000K", "E27/6500K"],
        "list_price": D("10.00"),
        "currency": "CNY",
        "substitutes": ["LED-A60-10W"],
        "packaging_options": {"export_carton": D("0.50"), "plain_box": D("0")},
    }
    return ProductUpserted.model_validate(data | overrides)


def mto(sku: str = "LAMP-MTO", lead: int = 14) -> ProductUpserted:
    return product(
        sku, name="Custom lamp", specs=[], make_to_order=True, production_lead_days=lead, packaging_options={}
    )


def line(line_no: int = 1, **overrides: Any) -> OrderLine:
    data: dict[str, Any] = {
        "line_no": line_no,
        "sku": "LED-A60-9W",
        "product_name": "LED bulb A60 9W",
        "spec": "E27/3000K",
        "quantity": 100,
        "uom": "EA",
        "unit_price": D("10.00"),
    }
    return OrderLine.model_validate(data | overrides)


def order(lines: list[OrderLine] | None = None, **overrides: Any) -> OrderAccepted:
    lines = lines if lines is not None else [line()]
    data: dict[str, Any] = {
        "event_id": "e-1",
        "order_key": "web:WEB-1",
        "order_number": "SO-20261127-000001",
        "channel": "web",
        "channel_order_ref": "WEB-1",
        "revision": 1,
        "submitted_at": datetime(2026, 11, 27, 8, 15, tzinfo=UTC),
        "customer_id": "C-1001",
        "lines": lines,
        "currency": "CNY",
        "total_amount": line_total(lines),
        "payment_method": "credit_terms",
        "requested_date": date(2026, 12, 5),
        "priority": "normal",
        "special_requirements": {},
    }
    return OrderAccepted.model_validate(data | overrides)


PRODUCTS = {"LED-A60-9W": product(), "LAMP-MTO": mto()}
CUSTOMER = customer()
ZERO = D("0")


def run(
    o: OrderAccepted | None = None,
    c: CustomerUpserted | None = CUSTOMER,
    products: dict[str, ProductUpserted] | None = None,
    exposure: Decimal = ZERO,
    previous: PreviousRevision | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Evaluation:
    return evaluate(o or order(), c, PRODUCTS if products is None else products, exposure, previous, TODAY, policy)


def codes(ev: Evaluation) -> list[str]:
    return [r.code for r in ev.reasons]


def rule(ev: Evaluation, name: str) -> list[RuleResult]:
    return [r for r in ev.results if r.rule == name]


def only(ev: Evaluation, code: str) -> Reason:
    found = [r for r in ev.reasons if r.code == code]
    assert len(found) == 1, ev.reasons
    return found[0]


# ---- the clean case ----
def test_clean_order_is_approved_with_every_rule_passing() -> None:
    ev = run()
    assert ev.outcome == "approved"
    assert ev.reasons == ()
    assert {r.outcome for r in ev.results} == {"pass"}
    expected = [
        "customer",
        "credit",
        "payment_method",
        "currency",
        "product",
        "price",
        "total",
        "packaging",
        "customisation",
        "requested_date",
        "revision",
    ]
    assert [r.rule for r in ev.results] == expected
    assert ev.total_with_charges == D("1000.00")
    assert ev.decided_by == "review-rules/1"


def test_decided_by_is_the_policy_rule_set() -> None:
    assert run(policy=Policy(rule_set="review-rules/2")).decided_by == "review-rules/2"


# ---- customer ----
def test_unknown_customer_is_rejected_and_customer_rules_are_skipped() -> None:
    ev = run(c=None)
    assert ev.outcome == "rejected"
    assert codes(ev) == ["unknown_customer"]
    assert only(ev, "unknown_customer").field == "customer.customer_id"
    for name in ("credit", "payment_method", "currency", "price"):
        assert all(r.outcome == "pass" and "skipped" in r.inputs for r in rule(ev, name))


def test_blocked_customer_is_rejected() -> None:
    ev = run(c=customer(status="blocked"))
    assert codes(ev) == ["customer_blocked"]
    assert only(ev, "customer_blocked").field == "customer.customer_id"


# ---- credit ----
@pytest.mark.parametrize(
    ("exposure", "outcome", "code"),
    [
        (D("9000.00"), "pass", None),  # exactly at the limit
        (D("9000.01"), "manual", "credit_review"),  # one cent over
        (D("10000.00"), "manual", "credit_review"),  # exactly 10% over
        (D("10000.01"), "reject", "credit_limit_exceeded"),  # just beyond the tolerance
    ],
)
def test_credit_boundaries(exposure: Decimal, outcome: str, code: str | None) -> None:
    ev = run(exposure=exposure)
    (credit,) = rule(ev, "credit")
    assert credit.outcome == outcome
    assert [r.code for r in credit.reasons] == ([code] if code else [])


def test_credit_manual_puts_the_order_in_review() -> None:
    ev = run(exposure=D("9500"))
    assert ev.outcome == "in_review"
    assert codes(ev) == ["credit_review"]


def test_credit_limit_exceeded_names_the_figures() -> None:
    ev = run(c=customer(outstanding_balance=D("4000")), exposure=D("7000"))
    reason = only(ev, "credit_limit_exceeded")
    assert ev.outcome == "rejected"
    for figure in ("4000.00", "7000.00", "1000.00", "12000.00", "10000.00", "11000.00"):
        assert figure in reason.message


def test_credit_counts_packaging_surcharges() -> None:
    special = {"packaging": "export_carton"}  # 100 x 0.50 = 50.00 surcharge
    ev = run(order(special_requirements=special), exposure=D("8950"))
    assert rule(ev, "credit")[0].outcome == "pass"
    ev = run(order(special_requirements=special), exposure=D("8950.01"))
    assert rule(ev, "credit")[0].outcome == "manual"
    assert rule(ev, "credit")[0].inputs["order_total"] == "1050.00"


def test_credit_not_checked_for_prepaid_customer_paying_prepaid() -> None:
    c = customer(payment_terms="prepaid", credit_limit=D("0"), allowed_payment_methods=[])
    ev = run(order(payment_method="prepaid"), c=c, exposure=D("999999"))
    assert ev.outcome == "approved"
    assert rule(ev, "credit")[0].inputs["skipped"] == "not a credit order"


def test_credit_terms_payment_by_prepaid_customer_is_checked_against_its_limit() -> None:
    c = customer(payment_terms="prepaid", credit_limit=D("0"))
    ev = run(c=c)
    assert codes(ev) == ["credit_limit_exceeded"]


def test_credit_tolerance_comes_from_the_policy() -> None:
    result = check_credit(order(), customer(), D("9100"), D("1000"), Policy(credit_tolerance_pct=D("0")))
    assert result.outcome == "reject"


# ---- payment method and currency ----
def test_payment_method_not_allowed() -> None:
    ev = run(order(payment_method="cash_on_delivery"), c=customer(payment_terms="prepaid"))
    assert codes(ev) == ["payment_method_not_allowed"]
    assert only(ev, "payment_method_not_allowed").field == "payment_method"


def test_empty_allowed_list_allows_any_payment_method() -> None:
    c = customer(payment_terms="prepaid", allowed_payment_methods=[])
    assert run(order(payment_method="cash_on_delivery"), c=c).outcome == "approved"


def test_currency_mismatch() -> None:
    ev = run(order(currency="USD"))
    assert codes(ev) == ["currency_mismatch"]
    assert only(ev, "currency_mismatch").field == "currency"


# ---- product ----
def test_unknown_sku() -> None:
    lines = [line(), line(2, sku="NOPE-1")]
    ev = run(order(lines))
    assert codes(ev) == ["unknown_sku"]
    assert only(ev, "unknown_sku").field == "lines[1].sku"
    assert rule(ev, "price")[1].inputs["skipped"] == "unknown product"


def test_product_discontinued() -> None:
    ev = run(products={"LED-A60-9W": product(status="discontinued")})
    assert codes(ev) == ["product_discontinued"]
    assert only(ev, "product_discontinued").field == "lines[0].sku"


def test_invalid_spec() -> None:
    ev = run(order([line(spec="E14/3000K")]))
    assert codes(ev) == ["invalid_spec"]
    assert only(ev, "invalid_spec").field == "lines[0].spec"


def test_spec_differing_only_in_case_and_spaces_is_valid() -> None:
    assert run(order([line(spec=" e27 / 3000k ")])).outcome == "approved"


def test_any_spec_is_valid_when_the_product_lists_none() -> None:
    assert run(products={"LED-A60-9W": product(specs=[])}).outcome == "approved"


def test_product_name_mismatch() -> None:
    ev = run(order([line(product_name="LED bulb A60 12W")]))
    assert codes(ev) == ["product_name_mismatch"]
    assert only(ev, "product_name_mismatch").field == "lines[0].product_name"


def test_product_name_is_case_and_whitespace_insensitive() -> None:
    assert run(order([line(product_name="  led  BULB a60 9w ")])).outcome == "approved"


# ---- price ----
@pytest.mark.parametrize(
    ("price", "outcome", "code"),
    [
        (D("10.00"), "pass", None),  # list price
        (D("9.00"), "pass", None),  # exactly the maximum discount (10%)
        (D("8.99"), "manual", "discount_review"),  # just beyond the maximum
        (D("8.50"), "manual", "discount_review"),  # exactly max + 5 points
        (D("8.49"), "reject", "price_below_policy"),  # beyond the tolerance
    ],
)
def test_discount_boundaries(price: Decimal, outcome: str, code: str | None) -> None:
    ev = run(order([line(unit_price=price)]))
    (result,) = rule(ev, "price")
    assert result.outcome == outcome
    assert [r.code for r in result.reasons] == ([code] if code else [])
    if code:
        assert result.reasons[0].field == "lines[0].unit_price"


def test_discount_review_puts_the_order_in_review() -> None:
    ev = run(order([line(unit_price=D("8.75"))]))
    assert ev.outcome == "in_review"
    assert codes(ev) == ["discount_review"]


def test_fractional_max_discount_and_rounded_floor() -> None:
    # list 9.99 at 7.5% -> 9.24075 -> floor 9.24; review floor at 12.5% -> 8.74125 -> 8.74
    p = product(list_price=D("9.99"))
    c = customer(max_discount_pct=7.5)
    assert check_price(0, line(unit_price=D("9.24")), p, c).outcome == "pass"
    assert check_price(0, line(unit_price=D("9.23")), p, c).outcome == "manual"
    assert check_price(0, line(unit_price=D("8.74")), p, c).outcome == "manual"
    assert check_price(0, line(unit_price=D("8.73")), p, c).outcome == "reject"


def test_contract_price_matched_exactly_passes_even_below_the_discount_floor() -> None:
    c = customer(contract_prices={"LED-A60-9W": D("6.8")})
    ev = run(order([line(unit_price=D("6.80"))]), c=c)
    assert ev.outcome == "approved"
    assert rule(ev, "price")[0].inputs["basis"] == "contract"


@pytest.mark.parametrize("price", [D("6.79"), D("6.81"), D("10.00")])
def test_contract_price_mismatch(price: Decimal) -> None:
    c = customer(contract_prices={"LED-A60-9W": D("6.80")})
    ev = run(order([line(unit_price=price)]), c=c)
    assert codes(ev) == ["contract_price_mismatch"]
    assert only(ev, "contract_price_mismatch").field == "lines[0].unit_price"


def test_total_mismatch() -> None:
    ev = run(order(total_amount=D("999.99")))
    assert codes(ev) == ["total_mismatch"]
    assert only(ev, "total_mismatch").field == "total_amount"
    assert ev.total_with_charges == D("1000.00")  # the recomputed figure


def test_total_equal_in_value_but_not_in_scale_matches() -> None:
    assert run(order(total_amount=D("1000"))).outcome == "approved"


# ---- packaging and surcharges ----
def test_packaging_surcharge_is_one_charge_per_line() -> None:
    lines = [line(quantity=100), line(2, quantity=30, unit_price=D("9.50"))]
    o = order(lines, special_requirements={"packaging": "export_carton"})
    ev = run(o)
    assert ev.outcome == "approved"
    assert [(c.code, c.amount) for c in ev.charges] == [
        ("packaging:export_carton", D("50.00")),
        ("packaging:export_carton", D("15.00")),
    ]
    assert "line 2" in ev.charges[1].description
    assert ev.total_with_charges == D("1000.00") + D("285.00") + D("65.00")


def test_surcharge_amount_is_rounded_to_cents() -> None:
    products = {"LED-A60-9W": product(packaging_options={"gift": D("0.333")})}
    o = order([line(quantity=10)], special_requirements={"packaging": "gift"})
    (charge,) = packaging_charges(o, products)
    assert charge.amount == D("3.33")


@pytest.mark.parametrize("value", [None, "", "  ", "standard", "Standard", "plain_box"])
def test_standard_or_free_packaging_adds_no_charge(value: str | None) -> None:
    ev = run(order(special_requirements={"packaging": value}))
    assert ev.outcome == "approved"
    assert ev.charges == ()
    assert ev.total_with_charges == D("1000.00")


def test_requested_packaging_normalises_standard_to_none() -> None:
    assert requested_packaging(order(special_requirements={"packaging": " standard "})) is None
    assert requested_packaging(order(special_requirements={"packaging": " export_carton"})) == "export_carton"


def test_unsupported_packaging() -> None:
    products = PRODUCTS
    lines = [line(), line(2, sku="LAMP-MTO", product_name="Custom lamp", spec="x", quantity=1)]
    o = order(lines, special_requirements={"packaging": "export_carton"}, requested_date=date(2026, 12, 31))
    ev = run(o, products=products)
    assert codes(ev) == ["unsupported_requirement"]
    reason = only(ev, "unsupported_requirement")
    assert reason.field == "special_requirements.packaging"
    assert "LAMP-MTO" in reason.message


def test_packaging_that_is_not_a_name_is_unsupported() -> None:
    ev = run(order(special_requirements={"packaging": {"kind": "crate"}}))
    assert codes(ev) == ["unsupported_requirement"]


# ---- customisation ----
@pytest.mark.parametrize(
    "notes",
    [
        "please add our LOGO",
        "engraved serial numbers",
        "Customised colour",
        "customize box",
        "需要定制",
        "外箱印字",
    ],
)
def test_customisation_notes_go_to_the_manual_queue(notes: str) -> None:
    ev = run(order(special_requirements={"notes": notes}))
    assert ev.outcome == "in_review"
    assert codes(ev) == ["customisation_review"]
    assert only(ev, "customisation_review").field == "special_requirements.notes"


@pytest.mark.parametrize("notes", ["deliver before noon", "call the customer first", "customs papers inside", ""])
def test_ordinary_notes_pass(notes: str) -> None:
    assert run(order(special_requirements={"notes": notes})).outcome == "approved"


def test_manual_words_come_from_the_policy() -> None:
    o = order(special_requirements={"notes": "gift wrap"})
    assert check_customisation(o, Policy(manual_note_words=("gift",))).outcome == "manual"


def test_unknown_special_requirement_goes_to_a_person() -> None:
    ev = run(order(special_requirements={"labels": "bilingual", "pallet": None}))
    assert ev.outcome == "in_review"
    assert [(r.code, r.field) for r in ev.reasons] == [("customisation_review", "special_requirements.labels")]


# ---- requested date ----
def test_make_to_order_date_before_lead_time_is_not_feasible() -> None:
    lines = [line(1, sku="LAMP-MTO", product_name="Custom lamp", spec="any", quantity=1)]
    o = order(lines, requested_date=TODAY + timedelta(days=13))
    ev = run(o)
    assert codes(ev) == ["date_not_feasible"]
    reason = only(ev, "date_not_feasible")
    assert reason.field == "requested_date"
    assert "2026-12-11" in reason.message and "LAMP-MTO" in reason.message


def test_make_to_order_date_exactly_at_lead_time_is_feasible() -> None:
    lines = [line(1, sku="LAMP-MTO", product_name="Custom lamp", spec="any", quantity=1)]
    assert run(order(lines, requested_date=TODAY + timedelta(days=14))).outcome == "approved"


def test_stock_product_needs_no_lead_time_but_not_a_past_date() -> None:
    assert run(order(requested_date=TODAY)).outcome == "approved"
    assert codes(run(order(requested_date=TODAY - timedelta(days=1)))) == ["date_not_feasible"]


# ---- revision ----
PREVIOUS = PreviousRevision(
    revision=1, unit_prices={1: D("10.00")}, payment_method="credit_terms", total_amount=D("1000.00")
)


@pytest.mark.parametrize(
    "changed",
    [
        {"lines": [line(unit_price=D("9.50"))], "total_amount": D("950.00")},
        {"payment_method": "bank_transfer"},
        {"lines": [line(quantity=120)], "total_amount": D("1200.00")},
    ],
    ids=["price", "payment_method", "total"],
)
def test_major_change_without_confirmation_is_rejected(changed: dict[str, Any]) -> None:
    ev = run(order(revision=2, **changed), previous=PREVIOUS)
    assert codes(ev) == ["confirmation_required"]
    assert only(ev, "confirmation_required").field == "customer_confirmation_ref"


@pytest.mark.parametrize("ref", [None, "", "   "])
def test_blank_confirmation_ref_does_not_confirm(ref: str | None) -> None:
    o = order([line(unit_price=D("9.50"))], revision=2, customer_confirmation_ref=ref)
    assert codes(run(o, previous=PREVIOUS)) == ["confirmation_required"]


def test_major_change_with_confirmation_ref_is_accepted() -> None:
    o = order([line(unit_price=D("9.50"))], revision=2, customer_confirmation_ref="email 2026-11-26 Li Wei")
    ev = run(o, previous=PREVIOUS)
    assert ev.outcome == "approved"
    assert "line 1 price" in rule(ev, "revision")[0].inputs["changes"]


def test_minor_change_needs_no_confirmation() -> None:
    o = order(revision=2, requested_date=date(2026, 12, 20), special_requirements={"notes": "ring first"})
    assert run(o, previous=PREVIOUS).outcome == "approved"


def test_first_revision_needs_no_confirmation() -> None:
    assert rule(run(), "revision")[0].inputs["skipped"] == "no previous revision"


# ---- outcome ----
def test_reject_wins_over_manual_and_lists_only_reject_reasons() -> None:
    o = order([line(unit_price=D("8.75"))], currency="USD", total_amount=D("875.00"))
    ev = run(o)
    assert ev.outcome == "rejected"
    assert codes(ev) == ["currency_mismatch"]
    assert rule(ev, "price")[0].outcome == "manual"  # still recorded for the audit


def test_in_review_lists_every_manual_reason() -> None:
    o = order([line(unit_price=D("8.75"))], special_requirements={"notes": "logo on box"})
    ev = run(o, exposure=D("9500"))
    assert ev.outcome == "in_review"
    assert codes(ev) == ["credit_review", "discount_review", "customisation_review"]


def test_every_reason_is_reported_together() -> None:
    lines = [
        line(1, spec="E14", product_name="Wrong name", unit_price=D("1.00")),
        line(2, sku="GHOST"),
        line(3, sku="OLD", product_name="Old lamp", spec="x"),
        line(4, sku="LAMP-MTO", product_name="Custom lamp", spec="x", quantity=1),
    ]
    products = {**PRODUCTS, "OLD": product("OLD", name="Old lamp", specs=[], status="discontinued")}
    c = customer(
        status="blocked",
        currency="EUR",
        allowed_payment_methods=["bank_transfer"],
        contract_prices={"OLD": D("5.00")},
    )
    o = order(
        lines,
        total_amount=D("1.00"),
        special_requirements={"packaging": "crate", "notes": "custom engraving"},
        requested_date=TODAY + timedelta(days=3),
        revision=2,
    )
    ev = run(o, c=c, products=products, previous=PREVIOUS, exposure=D("50000"))
    assert ev.outcome == "rejected"
    assert codes(ev) == [
        "customer_blocked",
        "credit_limit_exceeded",
        "payment_method_not_allowed",
        "currency_mismatch",
        "invalid_spec",
        "product_name_mismatch",
        "unknown_sku",
        "product_discontinued",
        "price_below_policy",
        "contract_price_mismatch",
        "total_mismatch",
        "unsupported_requirement",
        "date_not_feasible",
        "confirmation_required",
    ]
    assert [r.field for r in ev.reasons][4:10] == [
        "lines[0].spec",
        "lines[0].product_name",
        "lines[1].sku",
        "lines[2].sku",
        "lines[0].unit_price",
        "lines[2].unit_price",
    ]
    assert rule(ev, "customisation")[0].outcome == "manual"


def test_lines_carry_what_inventory_needs() -> None:
    lines = [
        line(),
        line(2, sku="LAMP-MTO", product_name="Custom lamp", spec="x", quantity=2),
        line(3, sku="X"),
    ]
    ev = run(order(lines, requested_date=date(2026, 12, 31)))
    first, made, unknown = ev.lines
    assert (first.make_to_order, first.production_lead_days, first.substitutes) == (False, 0, ["LED-A60-10W"])
    assert (made.line_no, made.make_to_order, made.production_lead_days, made.quantity) == (2, True, 14, 2)
    assert (unknown.make_to_order, unknown.production_lead_days, unknown.substitutes) == (False, 0, [])
    assert first.unit_price == D("10.00")


def test_unit_prices_are_never_rounded() -> None:
    o = order([line(quantity=1000, unit_price=D("0.0125"), product_name="LED bulb A60 9W")])
    ev = run(o, products={"LED-A60-9W": product(list_price=D("0.0125"))})
    assert ev.outcome == "approved"
    assert ev.lines[0].unit_price == D("0.0125")
    assert ev.total_with_charges == D("12.50")


def test_money_rounds_half_up_to_cents() -> None:
    assert money(D("1.005")) == D("1.01")
    assert money(D("1.004")) == D("1.00")


@given(st.decimals(min_value=D("0.01"), max_value=D("20.00"), places=2))
def test_price_outcome_is_monotone_in_the_price(price: Decimal) -> None:
    outcome = check_price(0, line(unit_price=price), product(), customer()).outcome
    expected = "pass" if price >= D("9.00") else "manual" if price >= D("8.50") else "reject"
    assert outcome == expected


@given(st.decimals(min_value=D("0"), max_value=D("20000"), places=2))
def test_evaluation_is_deterministic_and_consistent(exposure: Decimal) -> None:
    first, second = run(exposure=exposure), run(exposure=exposure)
    assert first == second
    outcomes = {r.outcome for r in first.results}
    expected = "rejected" if "reject" in outcomes else "in_review" if "manual" in outcomes else "approved"
    assert first.outcome == expected
