"""Intake service wiring: `python -m services.intake.app`."""

from typing import Any

from contracts import topics
from contracts.public import OrderSubmitted
from services.intake import handlers, store
from services.intake.config import IntakeSettings
from services.runtime.batch import Processor, Publisher
from services.runtime.outbox import Store
from services.runtime.service import main, run

NAME = "intake"
CONSUMES = (topics.ORDERS_SUBMITTED,)


def build(docs: Store, publisher: Publisher) -> Processor:
    """Intake's processor over its collection; order numbers come a block at a time per processor."""

    def key_of(msg: Any, rec: Any) -> list[str]:
        key = handlers.doc_key(msg, rec) if isinstance(msg, OrderSubmitted) else None
        return [key] if key else []

    return Processor(NAME, docs, publisher, handlers.routes(store.Numbers()), key_of, handlers.on_unreadable)


if __name__ == "__main__":
    main(run(NAME, IntakeSettings(), CONSUMES, build))
