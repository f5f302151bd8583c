"""Order entry for the keyed channels (handbook 2.1): the form's fields are named by their contract paths
(`ship_to.city`, `lines[0].quantity`), so intake's reasons, which name the same paths, land next to them."""

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from contracts import registry, topics
from contracts.public import PAYMENT_METHODS, PRIORITIES

KEYED: tuple[str, ...] = ("email", "fax", "phone", "sales_rep")
CUSTOMER = ("customer_id", "name", "contact_name", "phone", "email")
SHIP_TO = ("recipient", "line1", "line2", "city", "region", "postal_code", "country")
LINE = ("sku", "product_name", "spec", "quantity", "uom", "unit_price")
TOP = ("currency", "total_amount", "payment_method", "requested_date", "priority", "customer_confirmation_ref")
SPECIAL = ("packaging", "notes")
MAX_FORM_LINES = 200
_LINE_FIELD = re.compile(r"lines\[(\d+)\]\.(\w+)")
_INT = re.compile(r"[0-9]{1,9}")


class EntryError(ValueError):
    """A form the console cannot turn into an order.submitted (the message names the field)."""


def _value(raw: Any) -> str | None:
    text = str(raw).strip() if raw is not None else ""
    return text or None


def build_submission(
    form: Mapping[str, Any], entered_by: str, revision: int, now: datetime | None = None
) -> dict[str, Any]:
    """The `order.submitted` a keyed form stands for, read by the contract registry as intake reads it. Empty
    fields are sent as missing: completeness is intake's decision, and its reasons come back per field."""
    channel = _value(form.get("channel"))
    if channel not in KEYED:
        raise EntryError(f"channel must be one of {', '.join(KEYED)} (keyed channels), not {channel!r}")
    ref = _value(form.get("channel_order_ref"))
    if ref is None:
        raise EntryError("channel_order_ref (the channel's order reference) is empty")
    rows: dict[int, dict[str, Any]] = {}
    for name, raw in form.items():
        match = _LINE_FIELD.fullmatch(name)
        if match and match[2] in LINE:
            index = int(match[1])
            if index >= MAX_FORM_LINES:
                raise EntryError(f"{name}: the form takes at most {MAX_FORM_LINES} lines")
            rows.setdefault(index, {})[match[2]] = _value(raw)
    lines = []
    for number, (_, row) in enumerate(sorted(rows.items()), start=1):
        if not any(row.values()):
            continue  # a removed or untouched line
        quantity = row.get("quantity")
        lines.append(
            {
                "line_no": number,
                **{f: row.get(f) for f in LINE},
                "uom": row.get("uom") or "EA",
                "quantity": int(quantity) if quantity and _INT.fullmatch(quantity) else quantity,
            }
        )
    stamp = (now or datetime.now(UTC)).isoformat()
    body: dict[str, Any] = {
        "type": "order.submitted",
        "version": 1,
        "channel": channel,
        "channel_order_ref": ref,
        "revision": revision,
        "submitted_at": stamp,
        "entered_by": entered_by,
        "customer": {f: _value(form.get(f"customer.{f}")) for f in CUSTOMER},
        "ship_to": {f: _value(form.get(f"ship_to.{f}")) for f in SHIP_TO},
        "lines": lines,
        **{f: _value(form.get(f)) for f in TOP},
        "special_requirements": {f: _value(form.get(f"special_requirements.{f}")) for f in SPECIAL},
    }
    body["priority"] = body["priority"] or "normal"
    try:
        registry.parse(topics.ORDERS_SUBMITTED, json.dumps(body).encode())
    except registry.UnreadableMessage as exc:
        raise EntryError(f"the form cannot be sent: {exc.reason}") from None
    return body


def form_values(submitted: Mapping[str, Any] | None) -> dict[str, str]:
    """The form's field values from a submitted order (to correct a held order), by contract path."""
    if not submitted:
        return {}
    out: dict[str, str] = {}
    for section, names in (("customer", CUSTOMER), ("ship_to", SHIP_TO), ("special_requirements", SPECIAL)):
        raw = submitted.get(section)
        part: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        for f in names:
            out[f"{section}.{f}"] = "" if part.get(f) is None else str(part[f])
    for f in ("channel", "channel_order_ref", *TOP):
        out[f] = "" if submitted.get(f) is None else str(submitted[f])
    for i, line in enumerate(submitted.get("lines") or []):
        if isinstance(line, dict):
            for f in LINE:
                out[f"lines[{i}].{f}"] = "" if line.get(f) is None else str(line[f])
    return out


def line_count(values: Mapping[str, str]) -> int:
    """How many line rows the form shows (at least one)."""
    indexes = [int(m[1]) for name in values if (m := _LINE_FIELD.fullmatch(name))]
    return max(indexes, default=0) + 1


def reasons_by_field(reasons: list[dict[str, Any]]) -> tuple[dict[str, list[str]], list[str]]:
    """Reasons keyed by the field they name, and those naming no field of the form."""
    by_field: dict[str, list[str]] = {}
    other: list[str] = []
    for r in reasons:
        name = r.get("field")
        if isinstance(name, str) and name:
            by_field.setdefault(name, []).append(str(r.get("message")))
        else:
            other.append(str(r.get("message")))
    return by_field, other


CHOICES = {"payment_method": PAYMENT_METHODS, "priority": PRIORITIES, "channel": KEYED}
