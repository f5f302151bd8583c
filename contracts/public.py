"""The public contract v1: messages outside systems publish and read (see public-contract.md)."""

from decimal import Decimal
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from contracts.common import Day, Inbound, InboundMoney, Money, NonEmpty, Owned, Reason, Timestamp

Channel = Literal["web", "email", "fax", "phone", "sales_rep", "edi"]
CHANNELS: tuple[str, ...] = ("web", "email", "fax", "phone", "sales_rep", "edi")
PAYMENT_METHODS: tuple[str, ...] = ("prepaid", "credit_terms", "cash_on_delivery", "bank_transfer")
PRIORITIES: tuple[str, ...] = ("normal", "urgent")
Status = Literal[
    "invalid",
    "needs_clarification",
    "received",
    "in_review",
    "approved",
    "rejected",
    "reserved",
    "backordered",
    "in_production",
    "awaiting_customer_decision",
    "awaiting_priority_approval",
    "partially_shipped",
    "shipped",
    "delivered",
    "delivery_exception",
    "cancelled",
]
STATUSES: tuple[str, ...] = get_args(Status)
MAX_ORDER_LINES = 1000  # lines of one order.submitted; more make the message unreadable (DLQ + `invalid`)


# ---- orders.submitted: lenient on the wire; completeness is intake's business check ----
class OrderSubmitted(Inbound):
    """`order.submitted`: every field but type/version is read leniently and checked by intake.

    One limit is enforced on the wire: at most MAX_ORDER_LINES (1000) `lines`; a longer order is refused
    as unreadable with the field named (`lines`), so it is dead-lettered and answered with `invalid`."""

    type: Literal["order.submitted"]
    version: Literal[1]
    channel: Any = None
    channel_order_ref: Any = None
    revision: Any = None
    submitted_at: Any = None
    entered_by: Any = None
    customer: Any = None
    ship_to: Any = None
    lines: Any = None
    currency: Any = None
    total_amount: Any = None
    payment_method: Any = None
    requested_date: Any = None
    priority: Any = None
    special_requirements: Any = None
    customer_confirmation_ref: Any = None

    @field_validator("lines")
    @classmethod
    def _at_most_max_lines(cls, lines: Any) -> Any:
        """An order carries at most MAX_ORDER_LINES lines."""
        if isinstance(lines, list) and len(lines) > MAX_ORDER_LINES:
            raise ValueError(f"an order has at most {MAX_ORDER_LINES} lines; this one has {len(lines)}")
        return lines


# ---- orders.commands ----
class _Command(Inbound):
    version: Literal[1]
    command_id: NonEmpty
    channel: Channel
    channel_order_ref: NonEmpty
    issued_by: NonEmpty
    issued_at: Timestamp


class OrderCancel(_Command):
    """`order.cancel`: allowed until shipped; releases every reservation."""

    type: Literal["order.cancel"]
    reason: str


class ReviewDecision(_Command):
    """`order.review-decision`: a reviewer's decision on an order in the manual queue."""

    type: Literal["order.review-decision"]
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list)


class ShortageDecision(_Command):
    """`order.shortage-decision`: the customer's choice when stock is short."""

    type: Literal["order.shortage-decision"]
    choice: Literal["ship_partial", "wait", "substitute", "cancel"]
    substitute_sku: str | None = None
    # with ship_partial: what becomes of the part not in stock (optional; cancelled unless "backorder")
    remainder: Literal["cancel", "backorder"] = "cancel"


class PriorityApproval(_Command):
    """`order.priority-approval`: approves or denies a priority reallocation."""

    type: Literal["order.priority-approval"]
    approved: bool = True


# ---- master data ----
class CustomerUpserted(Inbound):
    """`customer.upserted` on the compacted `masterdata.customers` topic."""

    type: Literal["customer.upserted"]
    version: Literal[1]
    customer_id: NonEmpty
    name: str
    status: Literal["active", "blocked"]
    tier: Literal["standard", "vip"] = "standard"
    payment_terms: Literal["prepaid", "credit"] = "prepaid"
    credit_limit: InboundMoney = Decimal(0)
    outstanding_balance: InboundMoney = Decimal(0)
    currency: str
    allowed_payment_methods: list[str] = Field(default_factory=list)
    contract_prices: dict[str, InboundMoney] = Field(default_factory=dict)
    max_discount_pct: float = Field(0.0, ge=0, le=100)


class ProductUpserted(Inbound):
    """`product.upserted` on the compacted `masterdata.products` topic."""

    type: Literal["product.upserted"]
    version: Literal[1]
    sku: NonEmpty
    name: str
    specs: list[str] = Field(default_factory=list)
    uom: str = "EA"
    list_price: InboundMoney
    currency: str
    status: Literal["active", "discontinued"] = "active"
    make_to_order: bool = False
    production_lead_days: int = 0
    substitutes: list[str] = Field(default_factory=list)
    packaging_options: dict[str, InboundMoney] = Field(default_factory=dict)


# ---- inventory.movements (event_id is an optional addition: the idempotency key when given) ----
class _Movement(Inbound):
    version: Literal[1]
    event_id: str | None = None


class StockCounted(_Movement):
    """`stock.counted`: sets on-hand to an absolute count."""

    type: Literal["stock.counted"]
    sku: NonEmpty
    warehouse: NonEmpty
    on_hand: int = Field(ge=0)


class StockReceived(_Movement):
    """`stock.received`: goods arrived; fills backorders first, oldest promise first."""

    type: Literal["stock.received"]
    sku: NonEmpty
    warehouse: NonEmpty
    quantity: int = Field(gt=0)
    po_number: str | None = None


class PurchaseOrderUpdated(_Movement):
    """`purchase-order.updated`: an in-transit purchase order and its ETA."""

    type: Literal["purchase-order.updated"]
    po_number: NonEmpty
    sku: NonEmpty
    warehouse: NonEmpty
    quantity: int = Field(ge=0)
    eta: Day
    status: Literal["open", "cancelled"]


class ProductionUpdated(_Movement):
    """`production.updated`: production's answer to a production request."""

    type: Literal["production.updated"]
    production_request_id: NonEmpty
    sku: NonEmpty
    quantity: int = Field(ge=0)
    expected_completion: Day
    status: Literal["planned", "done", "cancelled"]


# ---- fulfillment.events (from warehouses and carriers; key: order_number) ----
class _ShipmentEvent(Inbound):
    version: Literal[1]
    shipment_id: NonEmpty
    order_number: str | None = None
    occurred_at: Timestamp | None = None


class ShipmentPicked(_ShipmentEvent):
    """`shipment.picked`."""

    type: Literal["shipment.picked"]


class ShipmentPacked(_ShipmentEvent):
    """`shipment.packed`."""

    type: Literal["shipment.packed"]


class ShipmentDispatched(_ShipmentEvent):
    """`shipment.dispatched`: handed to a carrier."""

    type: Literal["shipment.dispatched"]
    carrier: NonEmpty
    tracking_number: NonEmpty


class ShipmentDelivered(_ShipmentEvent):
    """`shipment.delivered`: signed receipt."""

    type: Literal["shipment.delivered"]
    signed_by: str
    delivered_at: Timestamp


class ShipmentException(_ShipmentEvent):
    """`shipment.exception`: lost, damaged or refused."""

    type: Literal["shipment.exception"]
    kind: Literal["lost", "damaged", "refused"]
    note: str | None = None


# ---- outbound ----
class OrderStatus(Owned):
    """`order.status`: one message per state change of an order."""

    type: Literal["order.status"] = "order.status"
    version: Literal[1] = 1
    event_id: str
    channel: str
    channel_order_ref: str
    revision: int | None = None
    order_number: str | None = None
    status: Status
    reasons: list[Reason] = Field(default_factory=list)
    promise_date: Day | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    occurred_at: Timestamp
    decided_by: str | None = None  # optional addition: the rule set or person that decided


class ShipmentLine(Owned):
    """A line of a shipment."""

    line_no: int
    sku: str
    quantity: int


class ShipTo(Owned):
    """A delivery address; travels only from intake to fulfillment and on to the warehouse."""

    recipient: str
    line1: str
    line2: str | None = None
    city: str
    region: str | None = None
    postal_code: str
    country: str


class ShipmentOpened(Owned):
    """`shipment.opened`: what a warehouse acts on."""

    type: Literal["shipment.opened"] = "shipment.opened"
    version: Literal[1] = 1
    event_id: str
    shipment_id: str
    order_number: str
    channel: str
    channel_order_ref: str
    warehouse: str
    lines: list[ShipmentLine]
    packaging: str | None = None
    notes: str | None = None
    ship_to: ShipTo | None = None


class ShipmentVoided(Owned):
    """`shipment.voided`: cancellation before dispatch."""

    type: Literal["shipment.voided"] = "shipment.voided"
    version: Literal[1] = 1
    event_id: str
    shipment_id: str
    order_number: str
    reason: str


class ProductionRequested(Owned):
    """`production.requested` on `supply.instructions`."""

    type: Literal["production.requested"] = "production.requested"
    version: Literal[1] = 1
    event_id: str
    production_request_id: str
    order_number: str
    sku: str
    quantity: int
    needed_by: Day


class PurchaseRequested(Owned):
    """`purchase.requested` on `supply.instructions`."""

    type: Literal["purchase.requested"] = "purchase.requested"
    version: Literal[1] = 1
    event_id: str
    purchase_request_id: str
    order_number: str
    sku: str
    quantity: int
    needed_by: Day


class InvoiceLine(Owned):
    """One invoiced line."""

    sku: str
    quantity: int
    unit_price: Money
    amount: Money


class Charge(Owned):
    """A separate charge line, e.g. a packaging surcharge."""

    code: str
    description: str
    amount: Money


class InvoiceRequested(Owned):
    """`invoice.requested`: exactly one per delivered order."""

    type: Literal["invoice.requested"] = "invoice.requested"
    version: Literal[1] = 1
    event_id: str
    order_number: str
    customer_id: str
    currency: str
    lines: list[InvoiceLine]
    charges: list[Charge] = Field(default_factory=list)
    total_amount: Money
    delivered_at: Timestamp


class DeadLetter(Owned):
    """A message that could not be processed, with the reason and where it came from."""

    type: Literal["dead-letter"] = "dead-letter"
    version: Literal[1] = 1
    event_id: str
    reason: str
    service: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    payload: str
    occurred_at: Timestamp
