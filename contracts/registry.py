"""Which message types travel on which topic, and the one way to read them off the wire."""

import json
from typing import Any

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


class UnreadableMessage(ValueError):
    """The bytes are not a message of this topic: not JSON, not an object, unknown type/version, bad fields."""

    def __init__(self, reason: str, raw: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def _type_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def load_object(value: bytes | None) -> dict[str, Any]:
    """Decode UTF-8 JSON text into an object, naming what is wrong when it is not one."""
    if value is None:
        raise UnreadableMessage("empty message (tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise UnreadableMessage(f"message of {len(value)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableMessage(f"not UTF-8: {exc}") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UnreadableMessage(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UnreadableMessage(f"not a JSON object but {type(raw).__name__}")
    if _depth(raw) > MAX_JSON_DEPTH:
        raise UnreadableMessage(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", raw)
    return raw


def parse(topic: str, value: bytes | None) -> BaseModel:
    """Read one message of `topic`, or raise UnreadableMessage with the reason."""
    raw = load_object(value)
    models = {_type_of(m): m for m in MODELS[topic]}
    kind = raw.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnreadableMessage(f"unknown type {kind!r} on {topic}; expected one of {sorted(models)}", raw)
    if raw.get("version") != 1:
        raise UnreadableMessage(f"unsupported version {raw.get('version')!r} of {kind}; expected 1", raw)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(message)'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise UnreadableMessage(f"{kind} does not match the contract: {problems}", raw) from None


def dump(message: BaseModel) -> bytes:
    """Serialise a message to the wire: compact UTF-8 JSON, money as strings."""
    return message.model_dump_json(exclude_none=False).encode()
