"""A catalogue of hostile `orders.submitted` payloads, each with the words its rejection must contain."""

import json
from dataclasses import dataclass
from typing import Any

from tests.factories import submitted


@dataclass(frozen=True)
class Hostile:
    """One hostile payload: the bytes, a fragment the reason must contain, and whether the channel order is
    still identifiable (then intake also answers `invalid`)."""

    name: str
    value: bytes
    reason: str
    identifiable: bool


def _order(ref: str, **over: Any) -> dict[str, Any]:
    return submitted(ref, **over)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _splice(ref: str, field: str, token: str) -> bytes:
    """A valid order whose `field` holds raw JSON `token` (NaN, 1e400, a 30-digit integer, ...)."""
    text = json.dumps({**_order(ref), field: "__TOKEN__"})
    return text.replace('"__TOKEN__"', token).encode()


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


def catalogue(tag: str) -> list[Hostile]:
    """Every kind of hostile input; `tag` makes the channel references unique per test."""
    ref = f"HOST-{tag}"
    order = _order(f"{ref}-base")
    line = order["lines"][0]
    return [
        Hostile(
            "oversized",
            _dumps({**_order(f"{ref}-big"), "special_requirements": {"notes": "x" * 1_000_000}}),
            "exceeds the 1000000-byte limit",
            False,
        ),
        Hostile(
            "deep nesting",
            _dumps({**_order(f"{ref}-deep"), "special_requirements": _nested(40)}),
            "nested deeper than 32 levels",
            True,
        ),
        Hostile("bracket bomb", b"[" * 200_000, "nested deeper than 32 levels", False),
        Hostile(
            "10,000 lines",
            _dumps({**_order(f"{ref}-10k"), "lines": [{"line_no": n + 1, "sku": "A"} for n in range(10_000)]}),
            "lines: Value error, an order has at most 1000 lines; this one has 10000",
            True,
        ),
        Hostile(
            "1001 real lines",
            _dumps({**_order(f"{ref}-1001"), "lines": [{**line, "line_no": n + 1} for n in range(1001)]}),
            "an order has at most 1000 lines; this one has 1001",
            True,
        ),
        Hostile(
            "control character",
            _dumps({**_order(f"{ref}-ctl"), "lines": [{**line, "sku": "LED\u0000\u001b[2J"}]}),
            "lines[0].sku: text holds the control character U+0000",
            True,
        ),
        Hostile(
            "escape sequence",
            _dumps({**_order(f"{ref}-esc"), "entered_by": "\u001b]0;owned\u0007"}),
            "entered_by: text holds the control character U+001B",
            True,
        ),
        Hostile(
            "lone surrogate",
            _dumps({**_order(f"{ref}-sur"), "customer": {**order["customer"], "name": "\ud800"}}),
            "customer.name: text holds a lone UTF-16 surrogate U+D800",
            False,
        ),
        Hostile(
            "latin-1",
            json.dumps({**_order(f"{ref}-l1"), "entered_by": "Société Générale"}, ensure_ascii=False).encode("latin-1"),
            "not UTF-8: invalid continuation byte",
            False,
        ),
        Hostile(
            "utf-16 with BOM", _dumps(_order(f"{ref}-u16")).decode().encode("utf-16"), "UTF-16 little-endian", False
        ),
        Hostile("utf-16 without BOM", _dumps(_order(f"{ref}-u16le")).decode().encode("utf-16-le"), "UTF-16", False),
        Hostile("utf-8 BOM", b"\xef\xbb\xbf" + _dumps(_order(f"{ref}-bom")), "UTF-8 byte-order mark", False),
        Hostile("invalid utf-8", b'{"type": "order.submitted", "version": 1, "x": "\xc3\x28"}', "not UTF-8", False),
        Hostile("raw null byte", b'{"type": "order.submitted", "version": 1, "x": "a\x00b"}', "Invalid control", False),
        Hostile("trailing null byte", _dumps(_order(f"{ref}-nul")) + b"\x00", "Extra data", False),
        Hostile("NaN", _splice(f"{ref}-nan", "total_amount", "NaN"), "NaN is not a JSON number", False),
        Hostile(
            "Infinity", _splice(f"{ref}-inf", "total_amount", "-Infinity"), "-Infinity is not a JSON number", False
        ),
        Hostile("1e400", _splice(f"{ref}-e400", "total_amount", "1e400"), "total_amount: number is too large", True),
        Hostile(
            "huge integer",
            _splice(f"{ref}-int", "revision", "9" * 30),
            "revision: integer of 30 digits is outside ±(2**53 - 1)",
            True,
        ),
        Hostile(
            "integer bomb", _splice(f"{ref}-bomb", "revision", "9" * 5000), "Exceeds the limit (4300 digits)", False
        ),
        Hostile(
            "duplicate keys",
            _dumps(_order(f"{ref}-dup"))[:-1] + b', "total_amount": "0.01"}',
            "duplicate key 'total_amount' in one object",
            False,
        ),
        Hostile("version as float", _dumps({**_order(f"{ref}-v"), "version": 1.0}), "expected the integer 1", True),
        Hostile("version as bool", _dumps({**_order(f"{ref}-vb"), "version": True}), "expected the integer 1", True),
        Hostile("not an object", b'"order"', "not a JSON object but str", False),
    ]
