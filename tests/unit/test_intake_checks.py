"""Unit and property tests of intake's completeness checks (services/intake/checks.py)."""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.common import Reason
from contracts.public import CHANNELS, PAYMENT_METHODS, PRIORITIES, OrderSubmitted
from services.intake.checks import (
    CONTACT_REQUIRED,
    CURRENCIES,
    DATE_IN_PAST,
    DUPLICATE_LINE_NO,
    ENTERED_BY_REQUIRED,
    INVALID_FORMAT,
    KEYED_CHANNELS,
    MISSING,
    NEGATIVE,
    NOT_POSITIVE,
    REASON_CODES,
    TOO_MANY_DECIMALS,
    TOTAL_MISMATCH,
    UNKNOWN_VALUE,
    WRONG_TYPE,
    CheckedOrder,
    check_submission,
)
from tests.examples import examples

# ---- helpers ----------------------------------------------------------------------------------

EXAMPLE: dict[str, Any] = {
    "type": "order.submitted",
    "version": 1,
    "channel": "web",
    "channel_order_ref": "WEB-100234",
    "revision": 1,
    "submitted_at": "2026-11-27T08:15:00+08:00",
    "entered_by": None,
    "customer": {
        "customer_id": "C-1001",
        "name": "Hangzhou Lighting Co.",
        "contact_name": "Li Wei",
        "phone": "+86 571 5550 1234",
        "email": "liwei@example.com",
    },
    "ship_to": {
        "recipient": "Li Wei",
        "line1": "88 Wensan Rd",
        "line2": None,
        "city": "Hangzhou",
        "region": "Zhejiang",
        "postal_code": "310012",
        "country": "CN",
    },
    "lines": [
        {
            "line_no": 1,
            "sku": "LED-A60-9W",
            "product_name": "LED bulb A60 9W",
            "spec": "E27/3000K",
            "quantity": 200,
            "uom": "EA",
            "unit_price": "6.80",
        }
    ],
    "currency": "CNY",
    "total_amount": "1360.00",
    "payment_method": "credit_terms",
    "requested_date": "2026-12-05",
    "priority": "normal",
    "special_requirements": {"packaging": "export_carton", "notes": "deliver before noon"},
    "customer_confirmation_ref": None,
}

REMOVE = object()  # sentinel: delete the key instead of setting a value
_STEP = re.compile(r"([A-Za-z_0-9]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [int(index or name) if (index or name).isdigit() else name for name, index in _STEP.findall(path)]


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with REMOVE delete) the value at a path like `lines[0].quantity`; makes null parents {}."""
    *parents, last = _steps(path)
    target: Any = doc
    for step in parents:
        if isinstance(step, str) and target.get(step) is None:
            target[step] = {}
        target = target[step]
    if value is REMOVE:
        target.pop(last, None)
    else:
        target[last] = value


def _changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with `path=value` changes (`__` in a keyword stands for `.`)."""
    doc = copy.deepcopy(base)
    for key, value in changes.items():
        _set(doc, key.replace("__", "."), value)
    return doc


def _check(doc: dict[str, Any]) -> tuple[CheckedOrder | None, list[Reason]]:
    return check_submission(OrderSubmitted.model_validate(doc))


def _found(doc: dict[str, Any]) -> set[tuple[str, str | None]]:
    order, reasons = _check(doc)
    assert (order is None) == bool(reasons)
    return {(reason.code, reason.field) for reason in reasons}


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _line_sum(doc: dict[str, Any]) -> Decimal:
    return sum((line["quantity"] * Decimal(line["unit_price"]) for line in doc["lines"]), Decimal(0))


# ---- corruptions: one field path made wrong in one way -----------------------------------------


@dataclass(frozen=True)
class Corruption:
    """Makes the field at `path` (`{i}` = a line index) wrong; expects exactly `code` on that path."""

    path: str
    code: str
    apply: Callable[[dict[str, Any], str], None]
    name: str
    min_lines: int = 1


def _label(value: Any) -> str:
    """A test id that is the same in every process (pytest-xdist compares them): no object address."""
    return "remove" if value is REMOVE else repr(value)


def _put(path: str, code: str, value: Any) -> Corruption:
    return Corruption(path, code, lambda doc, at: _set(doc, at, value), f"{path}={_label(value)}")


def _make_keyed_without_entered_by(value: Any) -> Callable[[dict[str, Any], str], None]:
    def apply(doc: dict[str, Any], at: str) -> None:
        doc["channel"] = "fax"
        _set(doc, at, value)

    return apply


def _drop_contact(doc: dict[str, Any], at: str) -> None:
    doc["customer"].pop("phone", None)
    doc["customer"]["email"] = ""


def _duplicate_line_no(doc: dict[str, Any], at: str) -> None:
    _set(doc, at, doc["lines"][0]["line_no"])


def _total_off_by_a_cent(doc: dict[str, Any], at: str) -> None:
    doc["total_amount"] = _money(_line_sum(doc) + Decimal("0.01"))


def _date_before_submission(doc: dict[str, Any], at: str) -> None:
    submitted_on = datetime.fromisoformat(doc["submitted_at"]).date()
    doc["requested_date"] = (submitted_on - timedelta(days=1)).isoformat()


def _simple(path: str, *cases: tuple[Any, str]) -> list[Corruption]:
    return [_put(path, code, value) for value, code in cases]


_ABSENT: tuple[tuple[Any, str], ...] = ((REMOVE, MISSING), (None, MISSING), ("", MISSING), ("  ", MISSING))
_TEXT: tuple[tuple[Any, str], ...] = (*_ABSENT, (7, WRONG_TYPE), (["x"], WRONG_TYPE))
_OBJECT: tuple[tuple[Any, str], ...] = (
    (REMOVE, MISSING),
    (None, MISSING),
    ("x", WRONG_TYPE),
    ([], WRONG_TYPE),
)
_POSITIVE: tuple[tuple[Any, str], ...] = (
    (REMOVE, MISSING), (None, MISSING), (0, NOT_POSITIVE), (-3, NOT_POSITIVE),
    (True, WRONG_TYPE), ("1", WRONG_TYPE), (1.5, WRONG_TYPE), (2.0, WRONG_TYPE),
)  # fmt: skip
_MONEY: tuple[tuple[Any, str], ...] = (
    *_ABSENT, (1.5, WRONG_TYPE), (5, WRONG_TYPE), ("abc", INVALID_FORMAT), ("1e3", INVALID_FORMAT),
    ("1,50", INVALID_FORMAT), ("NaN", INVALID_FORMAT), ("-1.00", NEGATIVE), ("1.234", TOO_MANY_DECIMALS),
)  # fmt: skip

CORRUPTIONS: list[Corruption] = [
    *_simple("channel", *_ABSENT, (5, WRONG_TYPE), ("pigeon", UNKNOWN_VALUE), ("WEB", UNKNOWN_VALUE)),
    *_simple("channel_order_ref", *_TEXT),
    *_simple("revision", *_POSITIVE),
    *_simple(
        "submitted_at",
        *_ABSENT,
        (1700000000, WRONG_TYPE),
        ("2026-11-27T08:15:00", INVALID_FORMAT),
        ("2026-11-27", INVALID_FORMAT),
        ("2026-02-30T08:00:00+08:00", INVALID_FORMAT),
        ("2026-11-27 08:15:00+08:00", INVALID_FORMAT),
        ("yesterday", INVALID_FORMAT),
    ),
    *_simple("entered_by", (42, WRONG_TYPE), (["x"], WRONG_TYPE)),
    *[
        Corruption("entered_by", ENTERED_BY_REQUIRED, _make_keyed_without_entered_by(v), f"entered_by={_label(v)}")
        for v in (REMOVE, None, "", " ")
    ],
    *_simple("customer", *_OBJECT),
    *_simple("customer.customer_id", *_TEXT),
    *_simple("customer.name", *_TEXT),
    *_simple("customer.contact_name", *_TEXT),
    *_simple(
        "customer.phone",
        ("call me", INVALID_FORMAT),
        ("12-34", INVALID_FORMAT),
        ("+1 " + "2" * 21, INVALID_FORMAT),
        ("12+34567", INVALID_FORMAT),
        (5712345, WRONG_TYPE),
    ),
    *_simple(
        "customer.email",
        ("li.example.com", INVALID_FORMAT),
        ("li@example", INVALID_FORMAT),
        ("li wei@example.com", INVALID_FORMAT),
        (5, WRONG_TYPE),
    ),
    Corruption("customer", CONTACT_REQUIRED, _drop_contact, "customer: no phone, no email"),
    *_simple("ship_to", *_OBJECT),
    *_simple("ship_to.recipient", *_TEXT),
    *_simple("ship_to.line1", *_TEXT),
    *_simple("ship_to.city", *_TEXT),
    *_simple("ship_to.postal_code", *_TEXT),
    *_simple(
        "ship_to.country",
        *_ABSENT,
        ("cn", INVALID_FORMAT),
        ("CHN", INVALID_FORMAT),
        ("C1", INVALID_FORMAT),
        (86, WRONG_TYPE),
    ),
    *_simple("ship_to.line2", (5, WRONG_TYPE)),
    *_simple("ship_to.region", ({"a": 1}, WRONG_TYPE)),
    *_simple("lines", *_OBJECT[:3], ([], MISSING), ({}, WRONG_TYPE)),
    *_simple("lines[{i}]", ("x", WRONG_TYPE), (None, WRONG_TYPE), ([1], WRONG_TYPE)),
    *_simple("lines[{i}].line_no", *_POSITIVE),
    Corruption("lines[{i}].line_no", DUPLICATE_LINE_NO, _duplicate_line_no, "line_no duplicate", 2),
    *_simple("lines[{i}].sku", *_TEXT),
    *_simple("lines[{i}].product_name", *_TEXT),
    *_simple("lines[{i}].spec", *_TEXT),
    *_simple("lines[{i}].uom", *_TEXT),
    *_simple("lines[{i}].quantity", *_POSITIVE),
    *_simple("lines[{i}].unit_price", *_MONEY),
    *_simple(
        "currency",
        *_ABSENT,
        ("usd", INVALID_FORMAT),
        ("US", INVALID_FORMAT),
        ("XYZ", UNKNOWN_VALUE),
        (840, WRONG_TYPE),
    ),
    *_simple("total_amount", *_MONEY),
    Corruption("total_amount", TOTAL_MISMATCH, _total_off_by_a_cent, "total_amount off by 0.01"),
    *_simple("payment_method", *_ABSENT, ("iou", UNKNOWN_VALUE), (3, WRONG_TYPE)),
    *_simple(
        "requested_date",
        *_ABSENT,
        ("2026-13-01", INVALID_FORMAT),
        ("2026-02-30", INVALID_FORMAT),
        ("05/12/2026", INVALID_FORMAT),
        ("2026-12-5", INVALID_FORMAT),
        ("2026-12-05T00:00:00+08:00", INVALID_FORMAT),
        (20261205, WRONG_TYPE),
    ),
    Corruption("requested_date", DATE_IN_PAST, _date_before_submission, "requested_date before submission"),
    *_simple("priority", *_ABSENT, ("asap", UNKNOWN_VALUE), (1, WRONG_TYPE)),
    *_simple("special_requirements", ("fragile", WRONG_TYPE), ([], WRONG_TYPE), (5, WRONG_TYPE)),
    *_simple("special_requirements.packaging", (5, WRONG_TYPE)),
    *_simple("special_requirements.notes", (["a"], WRONG_TYPE)),
    *_simple("customer_confirmation_ref", (5, WRONG_TYPE)),
]


def _corrupt(doc: dict[str, Any], corruption: Corruption, index: int) -> tuple[dict[str, Any], str]:
    """A corrupted deep copy of `doc` and the concrete path that was corrupted."""
    bad = copy.deepcopy(doc)
    path = corruption.path.format(i=index)
    corruption.apply(bad, path)
    return bad, path


# ---- the example and the individual rules ------------------------------------------------------


def test_contract_example_passes() -> None:
    order, reasons = _check(EXAMPLE)
    assert reasons == []
    assert order is not None
    assert order.channel == "web" and order.channel_order_ref == "WEB-100234" and order.revision == 1
    assert order.submitted_at == datetime(2026, 11, 27, 0, 15, tzinfo=UTC)
    assert order.customer_id == "C-1001" and order.customer_name == "Hangzhou Lighting Co."
    assert order.contact_name == "Li Wei" and order.email == "liwei@example.com"
    assert order.ship_to.city == "Hangzhou" and order.ship_to.line2 is None
    assert order.lines[0].unit_price == Decimal("6.80") and order.lines[0].quantity == 200
    assert order.total_amount == Decimal("1360.00")
    assert order.requested_date == date(2026, 12, 5)
    assert order.special_requirements == {"packaging": "export_carton", "notes": "deliver before noon"}
    assert order.model_dump(mode="json")["total_amount"] == "1360.00"


def test_checked_order_is_frozen_and_strict() -> None:
    order, _ = _check(EXAMPLE)
    assert order is not None
    with pytest.raises(ValidationError):
        order.channel = "edi"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CheckedOrder.model_validate({**order.model_dump(), "surprise": 1})
    naive = {**order.model_dump(), "submitted_at": datetime(2026, 11, 27, 8, 15)}
    with pytest.raises(ValidationError):
        CheckedOrder.model_validate(naive)


def test_checked_order_round_trips_through_json() -> None:
    order, _ = _check(EXAMPLE)
    assert order is not None
    assert CheckedOrder.model_validate_json(order.model_dump_json()) == order


def test_the_check_is_deterministic() -> None:
    broken = _changed(EXAMPLE, channel="x", lines=[{"line_no": 0}])
    assert _check(broken) == _check(broken)


def test_optional_fields_may_be_absent_or_null() -> None:
    doc = _changed(
        EXAMPLE,
        entered_by=REMOVE,
        ship_to__line2=REMOVE,
        ship_to__region=None,
        special_requirements=None,
        customer_confirmation_ref=REMOVE,
        customer__phone=None,
    )
    order, reasons = _check(doc)
    assert reasons == [] and order is not None
    assert order.special_requirements == {}
    assert order.phone is None and order.entered_by is None and order.customer_confirmation_ref is None


def test_special_requirements_may_be_empty_or_carry_other_keys() -> None:
    assert _found(_changed(EXAMPLE, special_requirements={})) == set()
    order, _ = _check(_changed(EXAMPLE, special_requirements={"labels": ["fragile"], "packaging": None}))
    assert order is not None and order.special_requirements == {"labels": ["fragile"], "packaging": None}


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c.name for c in CORRUPTIONS])
def test_each_corruption_of_the_example_is_reported_on_its_path(corruption: Corruption) -> None:
    doc = EXAMPLE
    if corruption.min_lines > 1:
        doc = _changed(EXAMPLE, lines=[EXAMPLE["lines"][0], {**EXAMPLE["lines"][0], "line_no": 2}])
        doc["total_amount"] = _money(_line_sum(doc))
    bad, path = _corrupt(doc, corruption, len(doc["lines"]) - 1)
    assert _found(bad) == {(corruption.code, path)}


def test_every_reason_code_is_exercised() -> None:
    assert {c.code for c in CORRUPTIONS} == REASON_CODES


def test_revision_rejects_bool_even_though_bool_is_an_int() -> None:
    assert _found(_changed(EXAMPLE, revision=True)) == {(WRONG_TYPE, "revision")}


@pytest.mark.parametrize("channel", sorted(KEYED_CHANNELS))
def test_keyed_in_channels_need_entered_by(channel: str) -> None:
    assert _found(_changed(EXAMPLE, channel=channel)) == {(ENTERED_BY_REQUIRED, "entered_by")}
    assert _found(_changed(EXAMPLE, channel=channel, entered_by="Zhang Min")) == set()


@pytest.mark.parametrize("channel", ["web", "edi"])
def test_structured_channels_do_not_need_entered_by(channel: str) -> None:
    assert _found(_changed(EXAMPLE, channel=channel, entered_by=None)) == set()


def test_entered_by_is_not_required_when_the_channel_itself_is_wrong() -> None:
    assert _found(_changed(EXAMPLE, channel="telex")) == {(UNKNOWN_VALUE, "channel")}


@pytest.mark.parametrize(
    ("phone", "email"), [("+86 571 5550 1234", None), (None, "liwei@example.com"), ("", "a.b-c@x.example.cn")]
)
def test_one_contact_channel_is_enough(phone: str | None, email: str | None) -> None:
    assert _found(_changed(EXAMPLE, customer__phone=phone, customer__email=email)) == set()


def test_contact_required_when_neither_phone_nor_email() -> None:
    found = _found(_changed(EXAMPLE, customer__phone=None, customer__email=" "))
    assert found == {(CONTACT_REQUIRED, "customer")}


def test_a_malformed_phone_still_counts_as_an_attempted_contact() -> None:
    found = _found(_changed(EXAMPLE, customer__phone="n/a", customer__email=None))
    assert found == {(INVALID_FORMAT, "customer.phone")}


@pytest.mark.parametrize("phone", ["+86 571 5550 1234", "(0571) 555-01234", "555.123.456", "123456", "+" + "9" * 20])
def test_well_formed_phones(phone: str) -> None:
    assert _found(_changed(EXAMPLE, customer__phone=phone)) == set()


@pytest.mark.parametrize("phone", ["12345", "+" + "9" * 21, "571 555 ext 1", "12+345678", "١٢٣٤٥٦٧"])
def test_malformed_phones(phone: str) -> None:
    assert _found(_changed(EXAMPLE, customer__phone=phone)) == {(INVALID_FORMAT, "customer.phone")}


@pytest.mark.parametrize("email", ["@example.com", "li@", "li@@example.com", "li@example.c", "li@exa mple.com"])
def test_malformed_emails(email: str) -> None:
    assert _found(_changed(EXAMPLE, customer__email=email)) == {(INVALID_FORMAT, "customer.email")}


def test_a_line_that_is_not_an_object_is_reported_once() -> None:
    doc = _changed(EXAMPLE, lines=[*EXAMPLE["lines"], "two boxes"])
    assert _found(doc) == {(WRONG_TYPE, "lines[1]")}


def test_quantity_must_be_a_real_integer() -> None:
    for value, code in ((0, NOT_POSITIVE), (-1, NOT_POSITIVE), (1.0, WRONG_TYPE), ("200", WRONG_TYPE)):
        assert _found(_changed(EXAMPLE, lines__0__quantity=value)) == {(code, "lines[0].quantity")}


def test_duplicate_line_no_is_reported_on_the_later_line() -> None:
    second = {**EXAMPLE["lines"][0], "sku": "LED-B", "quantity": 1, "unit_price": "1.00"}
    doc = _changed(EXAMPLE, lines=[EXAMPLE["lines"][0], second], total_amount="1361.00")
    order, reasons = _check(doc)
    assert order is None
    assert [(r.code, r.field) for r in reasons] == [(DUPLICATE_LINE_NO, "lines[1].line_no")]
    assert "lines[0]" in reasons[0].message


def test_float_money_is_wrong_type_and_says_so() -> None:
    _, reasons = _check(_changed(EXAMPLE, lines__0__unit_price=6.8))
    assert [(r.code, r.field) for r in reasons] == [(WRONG_TYPE, "lines[0].unit_price")]
    assert "string" in reasons[0].message


@pytest.mark.parametrize("price", ["0", "0.00", "6.8", "6", "006.80"])
def test_prices_with_up_to_two_places_are_fine(price: str) -> None:
    doc = _changed(EXAMPLE, lines__0__unit_price=price)
    doc["total_amount"] = _money(_line_sum(doc))
    assert _found(doc) == set()


def test_total_mismatch_names_both_figures() -> None:
    _, reasons = _check(_changed(EXAMPLE, total_amount="1350.00"))
    assert [(r.code, r.field) for r in reasons] == [(TOTAL_MISMATCH, "total_amount")]
    assert "1350.00" in reasons[0].message and "1360.00" in reasons[0].message


def test_total_compares_to_the_cent_regardless_of_trailing_zeros() -> None:
    assert _found(_changed(EXAMPLE, total_amount="1360")) == set()
    assert _found(_changed(EXAMPLE, total_amount="1360.0")) == set()
    assert _found(_changed(EXAMPLE, total_amount="1360.01")) == {(TOTAL_MISMATCH, "total_amount")}


def test_total_is_not_compared_when_a_line_amount_is_unknown() -> None:
    found = _found(_changed(EXAMPLE, lines__0__quantity=None, total_amount="1.00"))
    assert found == {(MISSING, "lines[0].quantity")}


def test_total_is_still_compared_when_only_a_non_amount_line_field_is_wrong() -> None:
    found = _found(_changed(EXAMPLE, lines__0__sku="", total_amount="1.00"))
    assert found == {(MISSING, "lines[0].sku"), (TOTAL_MISMATCH, "total_amount")}


def test_unknown_currency() -> None:
    assert "CNY" in CURRENCIES and "USD" in CURRENCIES and len(CURRENCIES) >= 40
    assert _found(_changed(EXAMPLE, currency="ABC")) == {(UNKNOWN_VALUE, "currency")}


def test_requested_date_on_the_submission_day_is_fine() -> None:
    assert _found(_changed(EXAMPLE, requested_date="2026-11-27")) == set()


def test_requested_date_uses_the_submissions_own_offset() -> None:
    # 23:30 at -05:00 is already the 28th in UTC, but the customer's day is the 27th.
    late = _changed(EXAMPLE, submitted_at="2026-11-27T23:30:00-05:00", requested_date="2026-11-27")
    assert _found(late) == set()
    # 00:30 at +08:00 is still the 27th in UTC, but the customer's day is the 28th.
    early = _changed(EXAMPLE, submitted_at="2026-11-28T00:30:00+08:00", requested_date="2026-11-27")
    assert _found(early) == {(DATE_IN_PAST, "requested_date")}


@pytest.mark.parametrize("moment", ["2026-11-27T08:15:00Z", "2026-11-27T08:15+0800", "2026-11-27T08:15:00.123+08:00"])
def test_timestamp_forms_with_offset(moment: str) -> None:
    assert _found(_changed(EXAMPLE, submitted_at=moment)) == set()


def test_date_is_not_checked_against_an_unreadable_submission_time() -> None:
    doc = _changed(EXAMPLE, submitted_at="soon", requested_date="2000-01-01")
    assert _found(doc) == {(INVALID_FORMAT, "submitted_at")}


def test_all_reasons_are_reported_at_once() -> None:
    doc = _changed(
        EXAMPLE,
        channel="phone",
        revision=0,
        customer__name="",
        customer__phone=None,
        customer__email=None,
        ship_to__city=None,
        ship_to__country="China",
        lines=[
            {
                "line_no": 1,
                "sku": "A",
                "product_name": "a",
                "spec": "s",
                "quantity": 2,
                "uom": "EA",
                "unit_price": "1.50",
            },
            {
                "line_no": 1,
                "sku": "",
                "product_name": "b",
                "spec": "s",
                "quantity": -1,
                "uom": "EA",
                "unit_price": 2.5,
            },
        ],
        currency="RMB",
        total_amount="5.00",
        payment_method="barter",
        requested_date="2026-11-31",
        priority=None,
        special_requirements="none",
    )
    order, reasons = _check(doc)
    assert order is None
    assert {(r.code, r.field) for r in reasons} == {
        (ENTERED_BY_REQUIRED, "entered_by"),
        (NOT_POSITIVE, "revision"),
        (MISSING, "customer.name"),
        (CONTACT_REQUIRED, "customer"),
        (MISSING, "ship_to.city"),
        (INVALID_FORMAT, "ship_to.country"),
        (DUPLICATE_LINE_NO, "lines[1].line_no"),
        (MISSING, "lines[1].sku"),
        (NOT_POSITIVE, "lines[1].quantity"),
        (WRONG_TYPE, "lines[1].unit_price"),
        (UNKNOWN_VALUE, "currency"),
        (UNKNOWN_VALUE, "payment_method"),
        (INVALID_FORMAT, "requested_date"),
        (MISSING, "priority"),
        (WRONG_TYPE, "special_requirements"),
    }
    assert len(reasons) == 15
    for reason in reasons:
        assert reason.field is not None and reason.field in reason.message
        assert reason.code in REASON_CODES


def test_an_empty_submission_lists_every_required_field() -> None:
    _, reasons = _check({"type": "order.submitted", "version": 1})
    assert {(r.code, r.field) for r in reasons} == {
        (MISSING, name)
        for name in (
            "channel", "channel_order_ref", "revision", "submitted_at", "customer", "ship_to", "lines",
            "currency", "total_amount", "payment_method", "requested_date", "priority",
        )
    }  # fmt: skip


# ---- properties ---------------------------------------------------------------------------------

_WORDS = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=12)
_OFFSETS = st.sampled_from([0, 480, -300, 330, 345, -600, 840, -720, 60])


@st.composite
def _phones(draw: st.DrawFn) -> str:
    digits = draw(st.text(alphabet="0123456789", min_size=6, max_size=20))
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    prefix = draw(st.sampled_from(["", "+"]))
    return prefix + sep.join(digits[k : k + 3] for k in range(0, len(digits), 3))


@st.composite
def _emails(draw: st.DrawFn) -> str:
    local = draw(st.text(alphabet="abcxyz019._-+", min_size=1, max_size=10))
    domain = draw(st.text(alphabet="abcdefxyz0-", min_size=1, max_size=10))
    tld = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6))
    return f"{local}@{domain}.{tld}"


@st.composite
def _submission_times(draw: st.DrawFn) -> tuple[str, date]:
    moment = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)))
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=draw(_OFFSETS))))
    text = aware.isoformat(timespec=draw(st.sampled_from(["auto", "minutes", "seconds", "milliseconds"])))
    if aware.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", "Z")
    return text, aware.date()


@st.composite
def _prices(draw: st.DrawFn) -> str:
    cents = draw(st.integers(min_value=0, max_value=10_000_000))
    if cents % 100 == 0 and draw(st.booleans()):
        return str(cents // 100)
    return f"{cents // 100}.{cents % 100:02d}"


@st.composite
def _lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=10))
    numbers = draw(st.lists(st.integers(1, 999), min_size=count, max_size=count, unique=True))
    return [
        {
            "line_no": number,
            "sku": draw(_WORDS),
            "product_name": draw(_WORDS),
            "spec": draw(_WORDS),
            "quantity": draw(st.integers(min_value=1, max_value=100_000)),
            "uom": draw(st.sampled_from(["EA", "BOX", "KG", "M"])),
            "unit_price": draw(_prices()),
        }
        for number in numbers
    ]


@st.composite
def valid_orders(draw: st.DrawFn) -> dict[str, Any]:
    """Random complete, consistent `order.submitted` payloads."""
    channel = draw(st.sampled_from(CHANNELS))
    submitted_at, submitted_on = draw(_submission_times())
    has_phone, has_email = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    phone = draw(_phones()) if has_phone else draw(st.sampled_from([None, ""]))
    email = draw(_emails()) if has_email else draw(st.sampled_from([None, " "]))
    lines = draw(_lines())
    requirements = draw(
        st.one_of(
            st.none(),
            st.just({}),
            st.fixed_dictionaries({}, optional={"packaging": _WORDS, "notes": st.text(max_size=30)}),
        )
    )
    doc: dict[str, Any] = {
        "type": "order.submitted",
        "version": 1,
        "channel": channel,
        "channel_order_ref": draw(_WORDS),
        "revision": draw(st.integers(min_value=1, max_value=50)),
        "submitted_at": submitted_at,
        "entered_by": draw(_WORDS) if channel in KEYED_CHANNELS else draw(st.none() | _WORDS),
        "customer": {
            "customer_id": draw(_WORDS),
            "name": draw(_WORDS),
            "contact_name": draw(_WORDS),
            "phone": phone,
            "email": email,
        },
        "ship_to": {
            "recipient": draw(_WORDS),
            "line1": draw(_WORDS),
            "line2": draw(st.none() | _WORDS),
            "city": draw(_WORDS),
            "region": draw(st.none() | _WORDS),
            "postal_code": draw(_WORDS),
            "country": draw(st.sampled_from(["CN", "US", "DE", "JP", "GB", "HK", "SG"])),
        },
        "lines": lines,
        "currency": draw(st.sampled_from(sorted(CURRENCIES))),
        "total_amount": "0",
        "payment_method": draw(st.sampled_from(PAYMENT_METHODS)),
        "requested_date": (submitted_on + timedelta(days=draw(st.integers(0, 120)))).isoformat(),
        "priority": draw(st.sampled_from(PRIORITIES)),
        "special_requirements": requirements,
        "customer_confirmation_ref": draw(st.none() | _WORDS),
    }
    doc["total_amount"] = _money(_line_sum(doc))
    return doc


_FAST = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(valid_orders())
def test_random_valid_orders_pass(doc: dict[str, Any]) -> None:
    order, reasons = _check(doc)
    assert reasons == []
    assert order is not None
    assert order.total_amount == Decimal(doc["total_amount"])
    assert [line.line_no for line in order.lines] == [line["line_no"] for line in doc["lines"]]
    assert order.requested_date >= order.submitted_at.date()


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_orders(), st.sampled_from(CORRUPTIONS), st.data())
def test_a_single_field_corruption_is_reported_on_exactly_that_path(
    doc: dict[str, Any], corruption: Corruption, data: st.DataObject
) -> None:
    assume(len(doc["lines"]) >= corruption.min_lines)
    index = data.draw(st.integers(min_value=corruption.min_lines - 1, max_value=len(doc["lines"]) - 1))
    bad, path = _corrupt(doc, corruption, index)
    order, reasons = _check(bad)
    assert order is None
    assert {reason.field for reason in reasons} == {path}
    assert {reason.code for reason in reasons} == {corruption.code}
