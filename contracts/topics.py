"""Every Kafka topic name, in one place. Public names are fixed by the public contract v1."""

from typing import Final

# Public, inbound
ORDERS_SUBMITTED: Final = "orders.submitted"
ORDERS_COMMANDS: Final = "orders.commands"
MASTERDATA_CUSTOMERS: Final = "masterdata.customers"
MASTERDATA_PRODUCTS: Final = "masterdata.products"
INVENTORY_MOVEMENTS: Final = "inventory.movements"
FULFILLMENT_EVENTS: Final = "fulfillment.events"
# Public, outbound
ORDERS_STATUS: Final = "orders.status"
FULFILLMENT_SHIPMENTS: Final = "fulfillment.shipments"
SUPPLY_INSTRUCTIONS: Final = "supply.instructions"
FINANCE_INVOICE_REQUESTS: Final = "finance.invoice-requests"
ORDERS_DLQ: Final = "orders.dlq"
# Internal, between our services (all keyed by "{channel}:{channel_order_ref}")
ORDERS_ACCEPTED: Final = "orderflow.orders.accepted"  # intake -> review
ORDERS_SHIPPING: Final = "orderflow.orders.shipping"  # intake -> fulfillment (ship-to only)
ORDERS_APPROVED: Final = "orderflow.orders.approved"  # review -> inventory
ORDERS_CANCELLED: Final = "orderflow.orders.cancelled"  # fulfillment -> review, inventory
INVENTORY_ALLOCATIONS: Final = "orderflow.inventory.allocations"  # inventory -> fulfillment
FULFILLMENT_DISPATCHED: Final = "orderflow.fulfillment.dispatched"  # fulfillment -> inventory

COMPACTED: Final = frozenset({MASTERDATA_CUSTOMERS, MASTERDATA_PRODUCTS})
ALL: Final = (
    ORDERS_SUBMITTED,
    ORDERS_COMMANDS,
    MASTERDATA_CUSTOMERS,
    MASTERDATA_PRODUCTS,
    INVENTORY_MOVEMENTS,
    FULFILLMENT_EVENTS,
    ORDERS_STATUS,
    FULFILLMENT_SHIPMENTS,
    SUPPLY_INSTRUCTIONS,
    FINANCE_INVOICE_REQUESTS,
    ORDERS_DLQ,
    ORDERS_ACCEPTED,
    ORDERS_SHIPPING,
    ORDERS_APPROVED,
    ORDERS_CANCELLED,
    INVENTORY_ALLOCATIONS,
    FULFILLMENT_DISPATCHED,
)
