"""Business metrics and FastStream's Prometheus middleware, on the process registry served at /metrics.

Labels carry only bounded vocabularies (service names, topic names, the contract's statuses), never an
order number, a channel reference or customer data.
"""

from collections import Counter as Tally
from collections.abc import Iterable

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter
from pymongo import monitoring

from contracts import topics
from contracts.public import STATUSES
from services.runtime.messages import Outgoing

ORDERS = Counter(
    "orderflow_orders",
    "Order statuses published on orders.status, by publishing service and status",
    ["service", "status"],
)
PUBLISHED = Counter(
    "orderflow_published_messages",
    "Messages the service published and the broker acknowledged, by service and topic",
    ["service", "topic"],
)
STORE_COMMANDS = Counter(
    "orderflow_store_commands",
    "Commands the service sent to its document store (one round trip each), by service and command name",
    ["service", "command"],
)
STORE_WRITES = Counter(
    "orderflow_store_writes",
    "Documents the service's write commands named (inserted, or updated or deleted by one statement each), by "
    "service and command name",
    ["service", "command"],
)
_WRITTEN = {"insert": "documents", "update": "updates", "delete": "deletes"}  # command -> its list of writes
_STATUS_KEY = b'"status":"'  # in compact JSON a key can only appear unescaped as a key, never inside a value
_KNOWN = {status.encode(): status for status in STATUSES}


def prometheus_middleware(service: str) -> KafkaPrometheusMiddleware:
    """FastStream's consume/publish metrics (faststream_*: app_name, broker, handler or topic) on REGISTRY."""
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)


def status_of(value: bytes) -> str | None:
    """The contract status of a serialised `order.status`, or None when it carries none we know."""
    at = value.find(_STATUS_KEY)
    if at < 0:
        return None
    start = at + len(_STATUS_KEY)
    return _KNOWN.get(value[start : value.find(b'"', start)])


def count_published(service: str, messages: Iterable[Outgoing]) -> None:
    """Count a batch's published (acknowledged) messages by topic, and the order statuses among them: one counter
    update per distinct topic and status, so the cost per batch is a byte search per status message (a replayed
    batch counts again)."""
    for topic, count in Tally(m.topic for m in messages).items():
        PUBLISHED.labels(service, topic).inc(count)
    tally = Tally(status_of(m.value) for m in messages if m.topic == topics.ORDERS_STATUS)
    for status, count in tally.items():
        if status is not None:
            ORDERS.labels(service, status).inc(count)


class StoreCommands(monitoring.CommandListener):
    """Counts every command a service's Mongo client sends (one round trip each) and the documents its write
    commands name; `sent` is the running total of commands a batch's log line reads before and after."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.sent = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count one command by name, and the documents it writes (a findAndModify writes one)."""
        self.sent += 1
        name = event.command_name
        STORE_COMMANDS.labels(self.service, name).inc()
        if name in _WRITTEN:
            STORE_WRITES.labels(self.service, name).inc(len(event.command.get(_WRITTEN[name], ())))
        elif name == "findAndModify":
            STORE_WRITES.labels(self.service, name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to count on success."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to count on failure (the start was counted)."""
