"""Fulfillment service wiring: `python -m services.fulfillment.app`."""

from pydantic import BaseModel

from contracts import topics
from contracts.internal import AllocationReserved, AllocationRevoked, OrderShipping, SupplyNeeded
from contracts.public import OrderCancel, OrderStatus, ProductionUpdated, PurchaseOrderUpdated
from services.fulfillment import handlers, store
from services.fulfillment.config import FulfillmentSettings
from services.runtime.batch import Handler, Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import main, run

NAME = "fulfillment"
CONSUMES = (
    topics.ORDERS_SHIPPING,
    topics.INVENTORY_ALLOCATIONS,
    topics.ORDERS_COMMANDS,
    topics.FULFILLMENT_EVENTS,
    topics.ORDERS_STATUS,  # every service's statuses: the order timeline (read model)
    topics.INVENTORY_MOVEMENTS,  # production's and purchasing's answers: slipped promises
)
HANDLERS: dict[type[BaseModel], Handler] = {
    OrderShipping: handlers.on_shipping,
    AllocationReserved: handlers.on_reserved,
    AllocationRevoked: handlers.on_revoked,
    SupplyNeeded: handlers.on_supply,
    OrderCancel: handlers.on_cancel,
    OrderStatus: handlers.on_status,
    ProductionUpdated: handlers.on_production,
    PurchaseOrderUpdated: handlers.on_purchase_order,
    **{t: handlers.on_shipment_event for t in store.SHIPMENT_EVENTS},
}


def build(store_: Store, publisher: Publisher) -> Processor:
    """Fulfillment's processor; it dead-letters unreadable commands for every service (and unreadable
    statuses), while inventory dead-letters unreadable movements."""
    return Processor(
        NAME,
        store_,
        publisher,
        HANDLERS,
        store.keys,
        skip_unreadable=frozenset({topics.INVENTORY_MOVEMENTS}),
    )


if __name__ == "__main__":
    main(run(NAME, FulfillmentSettings(), CONSUMES, build))
