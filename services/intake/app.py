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


def build(store: Store, publisher: Publisher) -> Processor:
    """Intake's processor over its collection."""

    def key_of(msg: Any, rec: Any) -> list[str]:
        key = handlers.doc_key(msg, rec) if isinstance(msg, OrderSubmitted) else None
        return [key] if key else []

    return Processor(NAME, store, publisher, dict(handlers.HANDLERS), key_of, handlers.on_unreadable)


if __name__ == "__main__":
    main(run(NAME, IntakeSettings(), CONSUMES, build, store.setup))
