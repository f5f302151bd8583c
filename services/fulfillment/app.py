"""Fulfillment service wiring: `python -m services.fulfillment.app`."""

from contracts import topics
from services.fulfillment import handlers, store
from services.fulfillment.config import FulfillmentSettings
from services.runtime.batch import Processor, Publisher
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


def build(store: Store, publisher: Publisher) -> Processor:
    """Fulfillment's processor; it dead-letters unreadable commands for every service (and unreadable
    statuses), while inventory dead-letters unreadable movements."""
    return Processor(
        NAME,
        store,
        publisher,
        dict(handlers.HANDLERS),
        handlers.keys,
        skip_unreadable=frozenset({topics.INVENTORY_MOVEMENTS}),
    )


if __name__ == "__main__":
    main(run(NAME, FulfillmentSettings(), CONSUMES, build, store.setup))
