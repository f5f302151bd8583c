"""Run one service's subscriber on FastStream's in-memory TestKafkaBroker over an in-memory document store
(or, given one, a real collection)."""

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts import topics
from services.runtime.memory import MemoryDocStore
from services.runtime.outbox import DocStore, Store
from services.runtime.relay import Relay
from services.runtime.service import BuildProcessor, Collection, wire
from services.runtime.settings import ServiceSettings

OUTPUTS = [t for t in topics.ALL]


class Harness:
    """Publish to the service's topics; every message it publishes is captured per topic."""

    def __init__(
        self,
        name: str,
        consumes: Sequence[str],
        build: BuildProcessor,
        collection: Collection | None = None,
        settings: ServiceSettings | None = None,
    ) -> None:
        self.store: Store = MemoryDocStore() if collection is None else DocStore(collection)
        self._collection = collection
        settings = settings or ServiceSettings()
        self.broker, self.processor = wire(name, settings, self.store, consumes, build)
        self.relay = Relay(name, self.store, self.processor.publisher)  # tests call `relay.run_once()`
        self.out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)  # each captured message's Kafka headers
        for topic in (t for t in OUTPUTS if t not in consumes):
            self._capture(topic)
        self._test = TestKafkaBroker(self.broker)

    def _capture(self, topic: str) -> None:
        @self.broker.subscriber(topic, batch=True)
        async def sink(body: Any, msg: KafkaMessage) -> None:
            raw = msg.raw_message
            for r in raw if isinstance(raw, list | tuple) else [raw]:
                value = json.loads(r.value)
                value["_key"] = r.key.decode() if isinstance(r.key, bytes) else r.key
                self.out[topic].append(value)
                self.headers[topic].append({k: v.decode() for k, v in r.headers or ()})

    @property
    def collection(self) -> Collection:
        """The real collection the harness was given (tests that read it need the servers)."""
        if self._collection is None:
            raise AttributeError("this harness runs on an in-memory store: read it through `store`")
        return self._collection

    @property
    def memory(self) -> MemoryDocStore:
        """The in-memory store (the default), for tests that inspect or seed stored rows."""
        if not isinstance(self.store, MemoryDocStore):
            raise AttributeError("this harness runs on a real collection: read it through `collection`")
        return self.store

    async def __aenter__(self) -> "Harness":
        await self._test.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._test.__aexit__(*exc)

    async def send(
        self, topic: str, value: dict[str, Any] | bytes, key: str = "k", headers: dict[str, str] | None = None
    ) -> None:
        """Publish one message as an outside system would (JSON bytes, with `headers` if given)."""
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        await self.broker.publish(raw, topic, key=key.encode(), headers=headers)

    def statuses(self) -> list[str]:
        """The `status` of every captured order.status, in order."""
        return [m["status"] for m in self.out[topics.ORDERS_STATUS]]

    def clear(self) -> None:
        """Forget the captured messages."""
        self.out.clear()
        self.headers.clear()
