"""Events between our own services (internal topics, keyed by "{channel}:{channel_order_ref}")."""

from typing import Any, Literal

from pydantic import Field

from contracts.common import Day, Money, Owned, Timestamp
from contracts.public import Charge, ShipmentLine, ShipTo


class OrderLine(Owned):
    """A checked order line."""

    line_no: int
    sku: str
    product_name: str
    spec: str
    quantity: int
    uom: str
    unit_price: Money


class _OrderEvent(Owned):
    version: Literal[1] = 1
    event_id: str
    order_key: str
    order_number: str | None
    channel: str
    channel_order_ref: str
    revision: int

    def identity(self) -> dict[str, Any]:
        """The fields that name the order, to carry into the events that follow from this one."""
        return {
            "order_key": self.order_key,
            "order_number": self.order_number,
            "channel": self.channel,
            "channel_order_ref": self.channel_order_ref,
            "revision": self.revision,
        }


class OrderTerms(Owned):
    """The order's own fields (customer, lines, money, dates), defined once: intake's checked order and
    `order.accepted` both carry them."""

    submitted_at: Timestamp
    customer_id: str
    lines: list[OrderLine]
    currency: str
    total_amount: Money
    payment_method: str
    requested_date: Day
    priority: str
    special_requirements: dict[str, Any] = Field(default_factory=dict)
    customer_confirmation_ref: str | None = None

    def terms(self) -> dict[str, Any]:
        """The order's own fields, to carry into a model that has them too."""
        return {name: getattr(self, name) for name in OrderTerms.model_fields}


class OrderAccepted(OrderTerms, _OrderEvent):
    """Intake accepted and numbered a complete order (or a new revision of one); review reviews it."""

    type: Literal["order.accepted"] = "order.accepted"


class OrderShipping(_OrderEvent):
    """The ship-to of an accepted order, sent only to fulfillment (which needs it for the warehouse)."""

    type: Literal["order.shipping"] = "order.shipping"
    ship_to: ShipTo


class ApprovedLine(Owned):
    """An approved line with what inventory needs to plan it."""

    line_no: int
    sku: str
    quantity: int
    unit_price: Money
    make_to_order: bool = False
    production_lead_days: int = 0
    substitutes: list[str] = Field(default_factory=list)


class OrderApproved(_OrderEvent):
    """Review approved the order; inventory allocates it."""

    type: Literal["order.approved"] = "order.approved"
    customer_id: str
    vip: bool = False
    priority: str = "normal"
    requested_date: Day
    currency: str
    lines: list[ApprovedLine]
    charges: list[Charge] = Field(default_factory=list)
    total_amount: Money
    packaging: str | None = None
    notes: str | None = None


class OrderCancelled(_OrderEvent):
    """Fulfillment accepted a cancellation: every service releases what it holds for the order."""

    type: Literal["order.cancelled"] = "order.cancelled"
    reason: str
    cancelled_by: str


class Allocation(Owned):
    """Reserved quantities in one warehouse."""

    warehouse: str
    lines: list[ShipmentLine]


class AllocationReserved(_OrderEvent):
    """Inventory reserved stock for the order (all of it, or the part the customer chose to ship)."""

    type: Literal["allocation.reserved"] = "allocation.reserved"
    customer_id: str
    currency: str
    allocations: list[Allocation]
    prices: dict[str, Money]  # sku -> unit price, for the invoice
    charges: list[Charge] = Field(default_factory=list)
    packaging: str | None = None
    notes: str | None = None
    complete: bool = True
    more_to_come: bool = False  # a partial allocation whose remainder is backordered: another allocation follows


class AllocationRevoked(_OrderEvent):
    """Inventory took back the stock of an allocation it published (reallocated to a priority order, or the
    order was amended): fulfillment voids the order's shipments not yet dispatched; a new allocation may follow."""

    type: Literal["allocation.revoked"] = "allocation.revoked"
    reason: str


class SupplyNeeded(_OrderEvent):
    """Inventory needs production or purchasing to supply a line; fulfillment sends the instruction."""

    type: Literal["supply.needed"] = "supply.needed"
    kind: Literal["production", "purchase"]
    request_id: str
    sku: str
    quantity: int
    needed_by: Day


class StockShipped(_OrderEvent):
    """A shipment was dispatched: inventory consumes the reserved stock from on-hand."""

    type: Literal["stock.shipped"] = "stock.shipped"
    shipment_id: str
    warehouse: str
    lines: list[ShipmentLine]
