"""The runtime's view of a consumed record and of a message to publish."""

from dataclasses import dataclass, replace

from pydantic import BaseModel

from contracts.registry import dump
from services.runtime import tracing


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    timestamp_ms: int = 0
    trace: str | None = None  # the W3C traceparent in its headers (read only when tracing is on)

    @property
    def origin(self) -> str:
        """Where the record sits: unique per record, stable on redelivery."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: topic, key and the serialised value."""

    topic: str
    key: str
    value: bytes
    trace: str | None = None  # the traceparent of the handler span that caused it (tracing on)

    @classmethod
    def of(cls, topic: str, key: str, message: BaseModel) -> "Outgoing":
        """Serialise `message` for `topic` under `key`."""
        return cls(topic, key, dump(message))

    def traced(self) -> "Outgoing":
        """This message carrying the trace context active now (itself when tracing is off, no span is active,
        or it already carries one)."""
        if self.trace is not None:
            return self
        parent = tracing.current()
        return self if parent is None else replace(self, trace=parent)

    def to_doc(self) -> dict[str, str]:
        """The form kept in a document's pending outbox (with `trace` only when it has a trace context)."""
        doc = {"topic": self.topic, "key": self.key, "value": self.value.decode()}
        if self.trace is not None:
            doc["trace"] = self.trace
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, str]) -> "Outgoing":
        """Rebuild from a pending-outbox entry (its trace context kept, so a republish continues the trace)."""
        return cls(doc["topic"], doc["key"], doc["value"].encode(), doc.get("trace"))
