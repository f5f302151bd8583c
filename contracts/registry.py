"""Which message types travel on which topic, and the one way to read them off the wire.

What `parse` accepts from outside (anything else raises UnreadableMessage naming what is wrong, and
the batch runtime dead-letters it): at most MAX_MESSAGE_BYTES of UTF-8 (no byte-order mark) holding
one JSON object, read as I-JSON (RFC 7493): no NaN/Infinity, no duplicate keys, integers within
±(2**53 - 1), finite numbers, text without lone surrogates or control characters other than tab,
line feed and carriage return, nesting at most MAX_JSON_DEPTH levels; `type` one of the topic's
types and `version` the integer 1; then the model's own field rules (money as decimal strings,
at most MAX_ORDER_LINES order lines, ...).
"""

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from contracts import internal as i
from contracts import public as p
from contracts import topics as t

MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    t.ORDERS_SUBMITTED: (p.OrderSubmitted,),
    t.ORDERS_COMMANDS: (p.OrderCancel, p.ReviewDecision, p.ShortageDecision, p.PriorityApproval),
    t.MASTERDATA_CUSTOMERS: (p.CustomerUpserted,),
    t.MASTERDATA_PRODUCTS: (p.ProductUpserted,),
    t.INVENTORY_MOVEMENTS: (p.StockCounted, p.StockReceived, p.PurchaseOrderUpdated, p.ProductionUpdated),
    t.FULFILLMENT_EVENTS: (
        p.ShipmentPicked,
        p.ShipmentPacked,
        p.ShipmentDispatched,
        p.ShipmentDelivered,
        p.ShipmentException,
    ),
    t.ORDERS_STATUS: (p.OrderStatus,),
    t.FULFILLMENT_SHIPMENTS: (p.ShipmentOpened, p.ShipmentVoided),
    t.SUPPLY_INSTRUCTIONS: (p.ProductionRequested, p.PurchaseRequested),
    t.FINANCE_INVOICE_REQUESTS: (p.InvoiceRequested,),
    t.ORDERS_DLQ: (p.DeadLetter,),
    t.ORDERS_ACCEPTED: (i.OrderAccepted,),
    t.ORDERS_SHIPPING: (i.OrderShipping,),
    t.ORDERS_APPROVED: (i.OrderApproved,),
    t.ORDERS_CANCELLED: (i.OrderCancelled,),
    t.INVENTORY_ALLOCATIONS: (i.AllocationReserved, i.AllocationRevoked, i.SupplyNeeded),
    t.FULFILLMENT_DISPATCHED: (i.StockShipped,),
}
MAX_MESSAGE_BYTES = 1_000_000
MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER = 2**53 - 1  # I-JSON: the integers every JSON reader (and a 64-bit store) holds exactly
MAX_ORDER_LINES = p.MAX_ORDER_LINES
_ECHO = 40  # characters of an offending value quoted back in a reason
# C0 control characters other than tab, LF and CR, and lone UTF-16 surrogates (from \ud800-style escapes).
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
# Escapes that may decode to such characters (a cheap screen before walking every string).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:00[01]|[dD][89a-fA-F])")
_BOMS = {
    b"\xef\xbb\xbf": "starts with a UTF-8 byte-order mark",
    b"\xff\xfe": "starts with a UTF-16 little-endian byte-order mark",
    b"\xfe\xff": "starts with a UTF-16 big-endian byte-order mark",
}


class UnreadableMessage(ValueError):
    """The bytes are not a message of this topic: not JSON, not an object, unknown type/version, bad fields.

    `raw` is the decoded object when there is one whose text is valid Unicode (safe to answer about);
    `field` the path of the offending field (`lines[0].sku`, `type`) when the fault lies in one."""

    def __init__(self, reason: str, raw: dict[str, Any] | None = None, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.field = field


class _Bad(Exception):
    """A rule broken at some path inside the decoded JSON; the path is filled in on the way out."""

    def __init__(self, problem: str, *, unicode: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.unicode, self.path = problem, unicode, list[str]()


def _type_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


def _shown(value: Any) -> str:
    """A short quotation of an offending value (never a whole payload in a log or a status)."""
    text = repr(value)
    return text if len(text) <= _ECHO else text[: _ECHO - 1] + "…"


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        dup = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"duplicate key {_shown(dup)} in one object")
    return obj


_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_no_duplicates)


def _check_text(text: str) -> None:
    bad = _BAD_CHAR.search(text)
    if bad is not None:
        code = ord(bad.group())
        if 0xD800 <= code <= 0xDFFF:
            raise _Bad(f"text holds a lone UTF-16 surrogate U+{code:04X} (not valid Unicode)", unicode=True)
        raise _Bad(f"text holds the control character U+{code:04X}; only tab, LF and CR are allowed")


def _check(value: Any, level: int) -> None:
    """Walk the decoded JSON once: depth, integer range, finite numbers and clean text (keys too)."""
    if level > MAX_JSON_DEPTH:
        raise _Bad(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            try:
                _check_text(key)
                _check(item, level + 1)
            except _Bad as exc:
                exc.path.append(key)
                raise
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                _check(item, level + 1)
            except _Bad as exc:
                exc.path.append(f"[{index}]")
                raise
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER:
            raise _Bad(f"integer of {len(str(abs(value)))} digits is outside ±(2**53 - 1)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Bad("number is too large to be finite")


def _clean(value: Any, level: int) -> bool:
    """Fast pass of `_check` for numbers and depth only (text is pre-screened): True when nothing is wrong."""
    if level >= MAX_JSON_DEPTH:
        return False
    items: Iterable[Any] = value.values() if type(value) is dict else value
    for item in items:
        kind = type(item)
        if kind is int:
            if not -MAX_JSON_INTEGER <= item <= MAX_JSON_INTEGER:
                return False
        elif kind is dict or kind is list:
            if not _clean(item, level + 1):
                return False
        elif kind is float and not math.isfinite(item):
            return False
    return True


def _path(parts: list[str]) -> str:
    """`lines[0].sku` from the segments collected innermost first."""
    out = ""
    for part in reversed(parts):
        part = part if len(part) <= _ECHO else part[: _ECHO - 1] + "…"
        out += part if part.startswith("[") else (f".{part}" if out else part)
    return (out if len(out) <= 4 * _ECHO else "…" + out[-4 * _ECHO :]) or "(message)"


def _decode(value: bytes) -> str:
    for bom, what in _BOMS.items():
        if value.startswith(bom):
            raise UnreadableMessage(f"not UTF-8 JSON: {what}; send UTF-8 without a byte-order mark")
    if len(value) > 1 and (value[0] == 0) != (value[1] == 0):
        raise UnreadableMessage("not UTF-8: looks like UTF-16 (every other byte is zero); send UTF-8")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableMessage(f"not UTF-8: {exc.reason} at byte {exc.start} (0x{value[exc.start]:02x})") from None


def load_object(value: bytes | None) -> dict[str, Any]:
    """Decode UTF-8 I-JSON text into an object, naming what is wrong (and where) when it is not one."""
    if value is None:
        raise UnreadableMessage("empty message (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise UnreadableMessage(f"message of {len(value)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    text = _decode(value)
    try:
        raw = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise UnreadableMessage(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise UnreadableMessage(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # our hooks, and integers past Python's 4300-digit conversion limit
        raise UnreadableMessage(f"not valid I-JSON: {str(exc).split(':')[0]}") from None
    if not isinstance(raw, dict):
        raise UnreadableMessage(f"not a JSON object but {type(raw).__name__}")
    if _SUSPECT_ESCAPE.search(text) is None and _clean(raw, 0):
        return raw
    try:
        _check(raw, 0)
    except _Bad as exc:
        where = _path(exc.path)
        raise UnreadableMessage(f"{where}: {exc.problem}", None if exc.unicode else raw, where) from None
    return raw


_BY_TYPE = {topic: {_type_of(m): m for m in models} for topic, models in MODELS.items()}


def parse(topic: str, value: bytes | None) -> BaseModel:
    """Read one message of `topic`, or raise UnreadableMessage with the reason."""
    raw = load_object(value)
    models = _BY_TYPE[topic]
    kind = raw.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnreadableMessage(
            f"unknown type {_shown(kind)} on {topic}; expected one of {sorted(models)}", raw, "type"
        )
    version = raw.get("version")
    if type(version) is not int or version != 1:
        raise UnreadableMessage(
            f"unsupported version {_shown(version)} of {kind}; expected the integer 1", raw, "version"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)[:10]
        paths = [_path([str(x) if isinstance(x, str) else f"[{x}]" for x in reversed(e["loc"])]) for e in errors]
        problems = "; ".join(f"{where}: {e['msg']}" for where, e in zip(paths, errors, strict=True))
        raise UnreadableMessage(f"{kind} does not match the contract: {problems}", raw, paths[0]) from None


def dump(message: BaseModel) -> bytes:
    """Serialise a message to the wire: compact UTF-8 JSON, money as strings."""
    return message.model_dump_json(exclude_none=False).encode()
