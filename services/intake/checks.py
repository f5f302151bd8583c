"""Completeness and consistency checks of an `order.submitted` (handbook §2.1, public contract).

Pure code: no I/O, no clock, no ids. `check_submission` reads the lenient wire model and returns
either a fully typed `CheckedOrder` or every reason why the order needs clarification, each with a
stable code and the field path (`ship_to.city`, `lines[0].quantity`, `customer.phone`).
"""

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contracts.common import Reason
from contracts.internal import OrderLine, OrderTerms
from contracts.public import CHANNELS, PAYMENT_METHODS, PRIORITIES, OrderSubmitted, ShipTo

# ---- reason codes (stable: channels and customer service match on them) ----
MISSING = "missing"
WRONG_TYPE = "wrong_type"
INVALID_FORMAT = "invalid_format"
CONTACT_PATHS = ("customer.", "ship_to.")
NOT_POSITIVE = "not_positive"
UNKNOWN_VALUE = "unknown_value"
DUPLICATE_LINE_NO = "duplicate_line_no"
TOTAL_MISMATCH = "total_mismatch"
DATE_IN_PAST = "date_in_past"
TOO_MANY_DECIMALS = "too_many_decimals"
NEGATIVE = "negative"
ENTERED_BY_REQUIRED = "entered_by_required"
CONTACT_REQUIRED = "contact_required"
REASON_CODES: frozenset[str] = frozenset(
    {
        MISSING,
        WRONG_TYPE,
        INVALID_FORMAT,
        NOT_POSITIVE,
        UNKNOWN_VALUE,
        DUPLICATE_LINE_NO,
        TOTAL_MISMATCH,
        DATE_IN_PAST,
        TOO_MANY_DECIMALS,
        NEGATIVE,
        ENTERED_BY_REQUIRED,
        CONTACT_REQUIRED,
    }
)

# Channels where a person keys the order in, so `entered_by` must say who.
KEYED_CHANNELS: frozenset[str] = frozenset({"email", "fax", "phone", "sales_rep"})

# Common ISO 4217 codes accepted as order currency.
CURRENCIES: frozenset[str] = frozenset(
    {
        "AED", "ARS", "AUD", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK",
        "EGP", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "JPY", "KRW", "KWD",
        "MXN", "MYR", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RUB",
        "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
    }
)  # fmt: skip

_MONEY_PLACES = 2
_PHONE_DIGITS = (6, 20)
_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})"
)
_TIMESTAMP_EXAMPLE = "2026-11-27T08:15:00+08:00"


class CheckedOrder(OrderTerms):
    """A submitted order that passed every completeness and consistency check: the order's own fields
    (`OrderTerms`), who sent it, and the contact data and address that stay in intake and fulfillment."""

    channel: str
    channel_order_ref: str
    revision: int
    entered_by: str | None
    customer_name: str
    contact_name: str
    phone: str | None
    email: str | None
    ship_to: ShipTo


def check_submission(msg: OrderSubmitted) -> tuple[CheckedOrder | None, list[Reason]]:
    """All completeness/consistency reasons at once; a CheckedOrder only when there are none."""
    ck = _Check()
    fields: dict[str, Any] = {}
    fields["channel"] = _choice(ck, msg.channel, "channel", "The channel", CHANNELS)
    fields["channel_order_ref"] = _text(ck, msg.channel_order_ref, "channel_order_ref", "The channel's order reference")
    fields["revision"] = _positive_int(ck, msg.revision, "revision", "The revision")
    fields["submitted_at"] = _timestamp(ck, msg.submitted_at, "submitted_at", "The submission time")
    fields["entered_by"] = _check_entered_by(ck, msg.entered_by, fields["channel"])
    fields.update(_check_customer(ck, msg.customer))
    fields["ship_to"] = _check_ship_to(ck, msg.ship_to)
    fields["lines"], lines_sum = _check_lines(ck, msg.lines)
    fields["currency"] = _check_currency(ck, msg.currency)
    fields["total_amount"] = _check_total(ck, msg.total_amount, lines_sum)
    fields["payment_method"] = _choice(ck, msg.payment_method, "payment_method", "The payment method", PAYMENT_METHODS)
    fields["requested_date"] = _check_requested_date(ck, msg.requested_date, fields["submitted_at"])
    fields["priority"] = _choice(ck, msg.priority, "priority", "The priority", PRIORITIES)
    fields["special_requirements"] = _check_special_requirements(ck, msg.special_requirements)
    fields["customer_confirmation_ref"] = _optional_text(
        ck, msg.customer_confirmation_ref, "customer_confirmation_ref", "The customer confirmation reference"
    )
    if ck.reasons:
        return None, list(ck.reasons)
    return CheckedOrder.model_validate(fields), []


# ---- reason collection ----
@dataclass
class _Check:
    """Collects reasons while the sections read the message."""

    reasons: list[Reason] = field(default_factory=list)

    def add(self, code: str, path: str, message: str) -> None:
        self.reasons.append(Reason(code=code, field=path, message=message))

    def missing(self, path: str, label: str) -> None:
        self.add(MISSING, path, f"{label} ({path}) is missing; please provide it.")

    def wrong_type(self, path: str, label: str, expected: str, value: Any) -> None:
        self.add(WRONG_TYPE, path, f"{label} ({path}) must be {expected}, not {_json_type(value)}.")

    def invalid_format(self, path: str, label: str, value: str, expected: str) -> None:
        shown = "the value given" if path.startswith(CONTACT_PATHS) else f"'{value}'"  # never echo contact data
        self.add(INVALID_FORMAT, path, f"{label} ({path}) {shown} is not valid: expected {expected}.")


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _absent(value: Any) -> bool:
    """Absent, null, or an empty/blank string."""
    return value is None or (isinstance(value, str) and not value.strip())


# ---- field readers: each returns the value or None after recording why ----
def _text(ck: _Check, value: Any, path: str, label: str) -> str | None:
    if _absent(value):
        ck.missing(path, label)
        return None
    if not isinstance(value, str):
        ck.wrong_type(path, label, "a string", value)
        return None
    return value


def _optional_text(ck: _Check, value: Any, path: str, label: str) -> str | None:
    if _absent(value):
        return None
    if not isinstance(value, str):
        ck.wrong_type(path, label, "a string", value)
        return None
    return value


def _choice(ck: _Check, value: Any, path: str, label: str, allowed: Collection[str]) -> str | None:
    text = _text(ck, value, path, label)
    if text is None:
        return None
    if text not in allowed:
        ck.add(UNKNOWN_VALUE, path, f"{label} ({path}) '{text}' is not one of: {', '.join(allowed)}.")
        return None
    return text


def _positive_int(ck: _Check, value: Any, path: str, label: str) -> int | None:
    if _absent(value):
        ck.missing(path, label)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        ck.wrong_type(path, label, "a whole number", value)
        return None
    if value < 1:
        ck.add(NOT_POSITIVE, path, f"{label} ({path}) is {value}; it must be 1 or more.")
        return None
    return value


def _money(ck: _Check, value: Any, path: str, label: str) -> Decimal | None:
    if _absent(value):
        ck.missing(path, label)
        return None
    if not isinstance(value, str):
        ck.wrong_type(path, label, 'a decimal string such as "12.50" (money travels as a string)', value)
        return None
    if not _DECIMAL.fullmatch(value):
        ck.invalid_format(path, label, value, "a plain decimal amount such as 12.50")
        return None
    amount = Decimal(value)
    if amount < 0:
        ck.add(NEGATIVE, path, f"{label} ({path}) is {value}; it cannot be negative.")
        return None
    if len(value.partition(".")[2]) > _MONEY_PLACES:
        ck.add(TOO_MANY_DECIMALS, path, f"{label} ({path}) '{value}' has more than two decimal places.")
        return None
    return amount


def _timestamp(ck: _Check, value: Any, path: str, label: str) -> datetime | None:
    text = _text(ck, value, path, label)
    if text is None:
        return None
    expected = f"an ISO-8601 timestamp with offset such as {_TIMESTAMP_EXAMPLE}"
    if not _TIMESTAMP.fullmatch(text):
        ck.invalid_format(path, label, text, expected)
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        ck.invalid_format(path, label, text, expected)
        return None


def _day(ck: _Check, value: Any, path: str, label: str) -> date | None:
    text = _text(ck, value, path, label)
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        ck.invalid_format(path, label, text, "a real calendar date written YYYY-MM-DD")
        return None


# ---- sections ----
def _check_entered_by(ck: _Check, value: Any, channel: str | None) -> str | None:
    if _absent(value):
        if channel in KEYED_CHANNELS:
            ck.add(
                ENTERED_BY_REQUIRED,
                "entered_by",
                f"An order received by {channel} is keyed in by a person: entered_by must name who entered it.",
            )
        return None
    return _optional_text(ck, value, "entered_by", "The person who entered the order")


def _check_customer(ck: _Check, value: Any) -> dict[str, Any]:
    if _absent(value):
        ck.missing("customer", "The customer")
        return {}
    if not isinstance(value, dict):
        ck.wrong_type("customer", "The customer", "an object", value)
        return {}
    result: dict[str, Any] = {
        "customer_id": _text(ck, value.get("customer_id"), "customer.customer_id", "The customer id"),
        "customer_name": _text(ck, value.get("name"), "customer.name", "The customer name"),
        "contact_name": _text(ck, value.get("contact_name"), "customer.contact_name", "The contact person"),
    }
    result["phone"] = _check_phone(ck, value.get("phone"))
    result["email"] = _check_email(ck, value.get("email"))
    if _absent(value.get("phone")) and _absent(value.get("email")):
        ck.add(
            CONTACT_REQUIRED,
            "customer",
            "The customer contact needs a phone (customer.phone) or an email (customer.email); neither is given.",
        )
    return result


def _check_phone(ck: _Check, value: Any) -> str | None:
    path, label = "customer.phone", "The contact phone"
    phone = _optional_text(ck, value, path, label)
    if phone is None:
        return None
    digits = sum(char.isdigit() for char in phone)
    low, high = _PHONE_DIGITS
    if not _PHONE.fullmatch(phone) or not low <= digits <= high:
        expected = f"{low}-{high} digits, optionally with a leading +, spaces, dashes, dots or parentheses"
        ck.invalid_format(path, label, phone, expected)
        return None
    return phone


def _check_email(ck: _Check, value: Any) -> str | None:
    path, label = "customer.email", "The contact email"
    email = _optional_text(ck, value, path, label)
    if email is None:
        return None
    if not _EMAIL.fullmatch(email):
        ck.invalid_format(path, label, email, "an address such as name@example.com")
        return None
    return email


def _check_ship_to(ck: _Check, value: Any) -> ShipTo | None:
    if _absent(value):
        ck.missing("ship_to", "The ship-to address")
        return None
    if not isinstance(value, dict):
        ck.wrong_type("ship_to", "The ship-to address", "an object", value)
        return None
    parts = {
        "recipient": _text(ck, value.get("recipient"), "ship_to.recipient", "The recipient"),
        "line1": _text(ck, value.get("line1"), "ship_to.line1", "The street address"),
        "line2": _optional_text(ck, value.get("line2"), "ship_to.line2", "The second address line"),
        "city": _text(ck, value.get("city"), "ship_to.city", "The city"),
        "region": _optional_text(ck, value.get("region"), "ship_to.region", "The region"),
        "postal_code": _text(ck, value.get("postal_code"), "ship_to.postal_code", "The postal code"),
        "country": _check_country(ck, value.get("country")),
    }
    required = ("recipient", "line1", "city", "postal_code", "country")
    if any(parts[name] is None for name in required):
        return None
    return ShipTo.model_validate(parts)


def _check_country(ck: _Check, value: Any) -> str | None:
    path, label = "ship_to.country", "The country"
    country = _text(ck, value, path, label)
    if country is not None and not _COUNTRY.fullmatch(country):
        ck.invalid_format(path, label, country, "an ISO 3166 alpha-2 code such as CN or US")
        return None
    return country


def _check_lines(ck: _Check, value: Any) -> tuple[list[OrderLine] | None, Decimal | None]:
    """The checked lines (None if any is wrong) and their sum (None when an amount is unknown)."""
    if _absent(value):
        ck.missing("lines", "The order lines")
        return None, None
    if not isinstance(value, list):
        ck.wrong_type("lines", "The order lines", "a list", value)
        return None, None
    if not value:
        ck.add(MISSING, "lines", "The order has no lines (lines is empty); it needs at least one.")
        return None, None
    first_index: dict[int, int] = {}
    lines: list[OrderLine | None] = []
    amounts: list[Decimal | None] = []
    for index, raw in enumerate(value):
        line, amount = _check_line(ck, index, raw, first_index)
        lines.append(line)
        amounts.append(amount)
    checked = [line for line in lines if line is not None]
    known = [amount for amount in amounts if amount is not None]
    return (
        checked if len(checked) == len(lines) else None,
        sum(known, Decimal(0)) if len(known) == len(amounts) else None,
    )


def _check_line(
    ck: _Check, index: int, value: Any, first_index: dict[int, int]
) -> tuple[OrderLine | None, Decimal | None]:
    """One checked line (or None) and its amount, quantity × unit price (None if either is wrong)."""
    at = f"lines[{index}]"
    if not isinstance(value, dict):
        ck.wrong_type(at, f"Order line {index + 1}", "an object", value)
        return None, None
    quantity = _positive_int(ck, value.get("quantity"), f"{at}.quantity", "The quantity")
    unit_price = _money(ck, value.get("unit_price"), f"{at}.unit_price", "The unit price")
    parts = {
        "line_no": _check_line_no(ck, value.get("line_no"), index, first_index),
        "sku": _text(ck, value.get("sku"), f"{at}.sku", "The product code"),
        "product_name": _text(ck, value.get("product_name"), f"{at}.product_name", "The product name"),
        "spec": _text(ck, value.get("spec"), f"{at}.spec", "The specification/model"),
        "quantity": quantity,
        "uom": _text(ck, value.get("uom"), f"{at}.uom", "The unit of measure"),
        "unit_price": unit_price,
    }
    amount = None if quantity is None or unit_price is None else quantity * unit_price
    if any(part is None for part in parts.values()):
        return None, amount
    return OrderLine.model_validate(parts), amount


def _check_line_no(ck: _Check, value: Any, index: int, first_index: dict[int, int]) -> int | None:
    path = f"lines[{index}].line_no"
    line_no = _positive_int(ck, value, path, "The line number")
    if line_no is None:
        return None
    if line_no in first_index:
        earlier = f"lines[{first_index[line_no]}]"
        ck.add(
            DUPLICATE_LINE_NO,
            path,
            f"Line number {line_no} ({path}) is already used by {earlier}; each line needs its own number.",
        )
        return None
    first_index[line_no] = index
    return line_no


def _check_currency(ck: _Check, value: Any) -> str | None:
    path, label = "currency", "The currency"
    currency = _text(ck, value, path, label)
    if currency is None:
        return None
    if not _CURRENCY.fullmatch(currency):
        ck.invalid_format(path, label, currency, "an ISO 4217 code of three capital letters such as CNY")
        return None
    if currency not in CURRENCIES:
        ck.add(UNKNOWN_VALUE, path, f"{label} ({path}) '{currency}' is not a currency we accept.")
        return None
    return currency


def _check_total(ck: _Check, value: Any, lines_sum: Decimal | None) -> Decimal | None:
    """The total; compared with the sum of the lines only when every line amount is known."""
    total = _money(ck, value, "total_amount", "The total amount")
    if total is None or lines_sum is None:
        return total
    if total != lines_sum:
        cents = Decimal("0.01")
        ck.add(
            TOTAL_MISMATCH,
            "total_amount",
            f"The total amount (total_amount) is {total.quantize(cents)} but the lines add up to "
            f"{lines_sum.quantize(cents)} (quantity × unit price).",
        )
        return None
    return total


def _check_requested_date(ck: _Check, value: Any, submitted_at: datetime | None) -> date | None:
    """The requested date, not before the submission's own calendar day (in its own offset)."""
    path, label = "requested_date", "The requested date"
    requested = _day(ck, value, path, label)
    if requested is None or submitted_at is None:
        return requested
    submitted_on = submitted_at.date()
    if requested < submitted_on:
        ck.add(
            DATE_IN_PAST,
            path,
            f"{label} ({path}) {requested.isoformat()} is before the order was submitted ({submitted_on.isoformat()}).",
        )
        return None
    return requested


def _check_special_requirements(ck: _Check, value: Any) -> dict[str, Any] | None:
    """Special requirements: null means none; packaging and notes are optional strings."""
    path, label = "special_requirements", "The special requirements"
    if value is None:
        return {}
    if not isinstance(value, dict):
        ck.wrong_type(path, label, "an object", value)
        return None
    ok = True
    for key in ("packaging", "notes"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            ck.wrong_type(f"{path}.{key}", f"The {key}", "a string", item)
            ok = False
    return dict(value) if ok else None
