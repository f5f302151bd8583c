"""structlog setup: JSON lines in production, console in development, never customer contact data.

Every line of a service process goes through the same processors, whether it comes from structlog, from
FastStream (see `BrokerLog`) or from a library's stdlib logger (aiokafka, pymongo): contact-data keys are
redacted and exceptions are rendered by `safe_exception`, which keeps the stack and the exception types but
not the values an exception message may quote (a pydantic error echoes its input, a KeyError its key): only
driver, broker and OS errors keep their (scrubbed) message.
"""

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from services.runtime import tracing

# Keys whose values are customer contact data or addresses: dropped from every log line.
PII_KEYS = frozenset(
    {"name", "contact_name", "phone", "email", "ship_to", "address", "recipient", "customer", "signed_by"}
)
# What an exception message may quote: 'single' or "double" quoted values, e-mail addresses, phone numbers.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ().-]{6,}\d")
_FORMATS = ("json", "console")
# Errors of the driver, the broker client and the OS: their messages describe infrastructure, not input.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (PyMongoError, KafkaError, OSError, TimeoutError)


def _drop_pii(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in PII_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


def scrub(text: str) -> str:
    """The text with quoted values, e-mail addresses and phone-like numbers replaced by placeholders."""
    return _PHONE.sub("[number]", _EMAIL.sub("[email]", _QUOTED.sub("'…'", text)))


def _message(exc: BaseException) -> str:
    """What a log line may say of an exception: pydantic errors without their input, infrastructure errors
    scrubbed, any other message withheld (it may quote input; a dead letter keeps the full reason)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(model)'}: {e['msg']}" for e in errors[:10])
        return f"{exc.error_count()} validation error(s) for {exc.title}: {where}"
    if isinstance(exc, INFRASTRUCTURE):
        return scrub(str(exc))
    return "(message withheld: it may quote input data)"


def safe_exception(exc: BaseException) -> str:
    """A traceback with every frame and exception type of the chain, and messages without quoted values."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        stack = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{stack}{type(current).__qualname__}: {_message(current)}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich was raised while handling:\n".join(parts)


def _scrub_foreign(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["event"] = scrub(str(event.get("event", "")))
    return event


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1]  # type: ignore[no-any-return]
    return sys.exc_info()[1] if exc_info else None


def _safe_exc_info(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = _exception(event.pop("exc_info", None))
    if exc is not None:
        event["exception"] = safe_exception(exc)
    return event


class _Stderr(structlog.PrintLogger):
    """Writes each line to the current sys.stderr (looked up per line, so redirection is honoured)."""

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        print(message, file=sys.stderr, flush=False)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _LibraryLines(logging.Handler):
    """Renders stdlib log records (aiokafka, pymongo, ...) through the service's processors, to sys.stderr."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record as one line."""
        try:
            print(self.format(record), file=sys.stderr, flush=False)
        except Exception:  # a log line must never break the service
            self.handleError(record)


class BrokerLog:
    """FastStream's logger: its per-batch access lines are dropped (each batch gets our `batch` line),
    warnings and errors become structlog lines with a safe traceback."""

    def log(self, level: int, msg: Any, /, *, exc_info: Any = None, extra: Any = None) -> None:
        """Forward a FastStream record at WARNING or above."""
        if level < logging.WARNING:
            return
        context = extra if isinstance(extra, dict) else {}
        exc = _exception(exc_info)
        structlog.get_logger("faststream").log(
            level,
            "broker",
            error=scrub(str(msg)) if exc is None else f"{type(exc).__qualname__}: {_message(exc)}",
            topic=context.get("topic"),
            group_id=context.get("group_id"),
            exc_info=exc_info,
        )


def configure(service: str, fmt: str = "json", level: str = "INFO") -> None:
    """Configure logging for one service process: `fmt` is "json" (production) or "console" (development)."""
    if fmt not in _FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(_FORMATS)}, not {fmt!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_pii,
        _safe_exc_info,
        *([tracing.log_ids] if tracing.enabled() else []),  # off: not even a context lookup per line
    ]
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _LibraryLines)]
    root.addHandler(
        _LibraryLines(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.add_logger_name, _scrub_foreign, *shared],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            )
        )
    )
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_: _Stderr(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
