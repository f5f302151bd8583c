"""Review service wiring: `python -m services.review.app`."""

from decimal import Decimal
from functools import partial

from pydantic import BaseModel

from contracts import topics
from contracts.internal import OrderAccepted, OrderCancelled
from contracts.public import CustomerUpserted, InvoiceRequested, ProductUpserted, ReviewDecision
from services.review import handlers, store
from services.review.config import ReviewSettings
from services.review.rules import Policy
from services.runtime.batch import Handler, Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import BuildProcessor, main, run

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


def build_for(settings: ReviewSettings) -> BuildProcessor:
    """Review's processor factory for the given settings."""
    on_accepted = partial(handlers.on_accepted, policy=policy_of(settings))
    wired: dict[type[BaseModel], Handler] = {
        CustomerUpserted: handlers.on_customer,
        ProductUpserted: handlers.on_product,
        OrderAccepted: on_accepted,
        ReviewDecision: handlers.on_decision,
        OrderCancelled: handlers.on_cancelled,
        InvoiceRequested: handlers.on_invoiced,
    }

    def build(docs: Store, publisher: Publisher) -> Processor:
        return Processor(
            NAME,
            docs,
            publisher,
            wired,
            store.keys,
            write_first=(store.CREDITS.prefix,),  # a claim is stored before the approval that needs it
            skip_unreadable=frozenset({topics.ORDERS_COMMANDS}),
        )

    return build


if __name__ == "__main__":
    cfg = ReviewSettings()
    main(run(NAME, cfg, CONSUMES, build_for(cfg), store.setup))
