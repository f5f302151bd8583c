"""Inventory service wiring: `python -m services.inventory.app`."""

from functools import partial
from typing import get_args

from pydantic import BaseModel

from contracts import topics
from contracts.internal import OrderApproved, OrderCancelled, StockShipped
from contracts.public import PriorityApproval, ShortageDecision
from services.inventory import handlers, store
from services.inventory.config import InventorySettings
from services.runtime.batch import Handler, Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import BuildProcessor, main, run

NAME = "inventory"
CONSUMES = (
    topics.ORDERS_APPROVED,
    topics.ORDERS_CANCELLED,
    topics.ORDERS_COMMANDS,
    topics.INVENTORY_MOVEMENTS,
    topics.FULFILLMENT_DISPATCHED,
)


def routes(prefs: tuple[str, ...]) -> dict[type[BaseModel], Handler]:
    """Each message type inventory reads, to its handler with the warehouse preference order."""
    return {
        OrderApproved: partial(handlers.on_approved, prefs=prefs),
        OrderCancelled: partial(handlers.on_cancelled, prefs=prefs),
        StockShipped: partial(handlers.on_shipped, prefs=prefs),
        **{kind: partial(handlers.on_stock, prefs=prefs) for kind in get_args(handlers.StockInput)},
        ShortageDecision: partial(handlers.on_shortage, prefs=prefs),
        PriorityApproval: partial(handlers.on_priority, prefs=prefs),
    }


def build_for(settings: InventorySettings) -> BuildProcessor:
    """Inventory's processor factory; stock documents are written before order documents."""

    def build(docs: Store, publisher: Publisher) -> Processor:
        return Processor(
            NAME,
            docs,
            publisher,
            routes(settings.warehouse_preference),
            handlers.keys,
            write_first=store.WRITE_FIRST,
            landed=store.note_landed,
            skip_unreadable=frozenset({topics.ORDERS_COMMANDS}),
        )

    return build


if __name__ == "__main__":
    cfg = InventorySettings()
    main(run(NAME, cfg, CONSUMES, build_for(cfg)))
