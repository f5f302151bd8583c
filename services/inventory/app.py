"""Inventory service wiring: `python -m services.inventory.app`."""

from contracts import topics
from services.inventory import handlers, store
from services.inventory.config import InventorySettings
from services.runtime.batch import Processor, Publisher
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


def build_for(settings: InventorySettings) -> BuildProcessor:
    """Inventory's processor factory; stock documents are written before order documents."""

    def build(store: Store, publisher: Publisher) -> Processor:
        return Processor(
            NAME,
            store,
            publisher,
            handlers.handlers(settings.warehouse_preference),
            handlers.keys,
            write_first=(store.STOCK,),
            skip_unreadable=frozenset({topics.ORDERS_COMMANDS}),
        )

    return build


if __name__ == "__main__":
    cfg = InventorySettings()
    main(run(NAME, cfg, CONSUMES, build_for(cfg), store.setup))
