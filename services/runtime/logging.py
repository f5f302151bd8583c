"""structlog setup: JSON lines in production, console in development, never customer contact data."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are customer contact data or addresses: dropped from every log line.
PII_KEYS = frozenset(
    {"name", "contact_name", "phone", "email", "ship_to", "address", "recipient", "customer", "signed_by"}
)


def _drop_pii(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in PII_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


class _Stderr(structlog.PrintLogger):
    """Writes each line to the current sys.stderr (looked up per line, so redirection is honoured)."""

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        print(message, file=sys.stderr, flush=False)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def configure(service: str, fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog for one service process."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    for noisy in ("aiokafka", "faststream", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_pii,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_: _Stderr(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
