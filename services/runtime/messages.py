"""The runtime's view of a consumed record and of a message to publish."""

from dataclasses import dataclass

from pydantic import BaseModel

from contracts.registry import dump


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    timestamp_ms: int = 0

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

    @classmethod
    def of(cls, topic: str, key: str, message: BaseModel) -> "Outgoing":
        """Serialise `message` for `topic` under `key`."""
        return cls(topic, key, dump(message))

    def to_doc(self) -> dict[str, str]:
        """The form kept in a document's pending outbox."""
        return {"topic": self.topic, "key": self.key, "value": self.value.decode()}

    @classmethod
    def from_doc(cls, doc: dict[str, str]) -> "Outgoing":
        """Rebuild from a pending-outbox entry."""
        return cls(doc["topic"], doc["key"], doc["value"].encode())
