"""Review service wiring: `python -m services.review.app`."""

import asyncio
from decimal import Decimal
from functools import partial

from pydantic import BaseModel

from contracts import topics
from contracts.internal import OrderAccepted, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import handlers, store
from services.review.config import ReviewSettings
from services.review.masterdata import MasterData, follow
from services.review.rules import Policy
from services.runtime.batch import Handler, Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import BuildProcessor, Collection, Setup, main, run

NAME = "review"
CONSUMES = (
    topics.MASTERDATA_CUSTOMERS,
    topics.MASTERDATA_PRODUCTS,
    topics.ORDERS_ACCEPTED,
    topics.ORDERS_COMMANDS,
    topics.ORDERS_CANCELLED,
    topics.FINANCE_INVOICE_REQUESTS,
)


def policy_of(settings: ReviewSettings) -> Policy:
    """The review policy from settings."""
    return Policy(
        credit_tolerance_pct=Decimal(str(settings.credit_tolerance_pct)),
        discount_tolerance_points=Decimal(str(settings.discount_tolerance_points)),
        manual_note_words=settings.manual_note_words,
    )


def build_for(settings: ReviewSettings, memory: MasterData | None = None) -> BuildProcessor:
    """Review's processor factory for the given settings; master data in `memory` (default: fed by the group's
    handlers alone, ready at once, as in handler tests where one process consumes every partition)."""
    masterdata = MasterData.fed_by_handlers() if memory is None else memory

    def build(docs: Store, publisher: Publisher) -> Processor:
        progress = handlers.Progress()  # per process: which consumed records have been fully written
        on_accepted = partial(handlers.on_accepted, policy=policy_of(settings), progress=progress, memory=masterdata)
        wired: dict[type[BaseModel], Handler] = {
            CustomerUpserted: partial(handlers.on_customer, memory=masterdata),
            ProductUpserted: partial(handlers.on_product, memory=masterdata),
            OrderAccepted: on_accepted,
            ReviewDecision: partial(handlers.on_decision, progress=progress),
            OrderCancelled: partial(handlers.on_cancelled, progress=progress),
            InvoiceRequested: partial(handlers.on_invoiced, progress=progress),
        }
        return Processor(
            NAME,
            docs,
            publisher,
            wired,
            store.keys,
            write_first=(store.CREDITS.prefix,),  # a claim is counted before the order that holds it is stored
            skip_unreadable=frozenset({topics.ORDERS_COMMANDS}),
        )

    return build


def setup_for(settings: ReviewSettings, memory: MasterData) -> Setup:
    """Review's start-up: a reader of all master data into `memory` for this process."""
    tasks: list[asyncio.Task[None]] = []

    async def setup(collection: Collection) -> None:
        tasks.append(asyncio.create_task(follow(memory, settings.kafka_bootstrap_servers, settings)))

    return setup


if __name__ == "__main__":
    cfg, memory = ReviewSettings(), MasterData()
    main(run(NAME, cfg, CONSUMES, build_for(cfg, memory), setup_for(cfg, memory)))
