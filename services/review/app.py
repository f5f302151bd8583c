"""Review service wiring: `python -m services.review.app`."""

from decimal import Decimal

from contracts import topics
from services.review import handlers, store
from services.review.config import ReviewSettings
from services.review.rules import Policy
from services.runtime.batch import Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import main, run

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


def build_for(settings: ReviewSettings):  # type: ignore[no-untyped-def]
    """Review's processor factory for the given settings."""

    def build(store: Store, publisher: Publisher) -> Processor:
        hs = handlers.handlers(policy_of(settings))
        return Processor(
            NAME,
            store,
            publisher,
            hs,
            handlers.keys,
            write_first=(store.CREDIT,),  # a claim is stored before the approval that needs it
            skip_unreadable=frozenset({topics.ORDERS_COMMANDS}),
        )

    return build


if __name__ == "__main__":
    cfg = ReviewSettings()
    main(run(NAME, cfg, CONSUMES, build_for(cfg), store.setup))
