"""A warehouse and carrier simulator: plays pick, pack, dispatch and delivery for opened shipments.

Each step follows the previous one after a random delay. A configurable share of dispatched shipments
runs into a delivery exception (lost, damaged, refused); the warehouse then re-ships it with a new
tracking number and it is delivered. A voided shipment (the order was cancelled) is not played further.
"""

import asyncio
import contextlib
import json
import os
import random
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import topics
from orderflow.bus import partitions, publish
from services.runtime.kafka import client_kwargs

log = structlog.get_logger()


class Simulator:
    """Consumes `fulfillment.shipments`, answers on `fulfillment.events` with realistic delays."""

    def __init__(
        self,
        bootstrap: str,
        *,
        exception_rate: float = 0.0,
        delay: tuple[float, float] = (0.05, 0.3),
        seed: int = 1,
        group: str | None = None,
    ) -> None:
        self.bootstrap, self.exception_rate, self.delay = bootstrap, exception_rate, delay
        self.rng = random.Random(seed)
        # like the services' groups, prefixed with KAFKA_GROUP_PREFIX (each e2e session has its own)
        self.group = group or os.environ.get("KAFKA_GROUP_PREFIX", "") + "orderflow-simulator"
        self.voided: set[str] = set()
        self.played: set[str] = set()  # shipments already being played (a republished opening is ignored)
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts: dict[str, int] = {}

    async def skip_backlog(self) -> None:
        """Commit the simulator group at the current end of `fulfillment.shipments`, so that only shipments
        opened from now on are played (e.g. a fresh database on a Kafka that still holds older runs'
        shipments, whose order numbers a fresh database hands out again)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False, **client_kwargs()
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(topics.FULFILLMENT_SHIPMENTS, p)
                for p in await partitions(consumer, topics.FULFILLMENT_SHIPMENTS)
            ]
            consumer.assign(tps)
            await consumer.commit(dict(await consumer.end_offsets(tps)))
        finally:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        consumer = AIOKafkaConsumer(
            topics.FULFILLMENT_SHIPMENTS,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            **client_kwargs(),
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, **client_kwargs())
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=300)
                for recs in batch.values():
                    for r in recs:
                        self._on(producer, r.value)
        finally:
            for t in list(self.tasks):
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self.tasks, return_exceptions=True)
            await consumer.stop()
            await producer.stop()

    def _on(self, producer: AIOKafkaProducer, raw: bytes | None) -> None:
        try:
            msg = json.loads(raw or b"")
        except ValueError:
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("shipment_id"), str):
            return
        if msg.get("type") == "shipment.voided":
            self.voided.add(msg["shipment_id"])
        elif msg.get("type") == "shipment.opened" and msg["shipment_id"] not in self.played:
            self.played.add(msg["shipment_id"])
            task = asyncio.create_task(self._play(producer, msg))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _step(self, producer: AIOKafkaProducer, ship: dict[str, Any], event_type: str, **extra: Any) -> bool:
        await asyncio.sleep(self.rng.uniform(*self.delay))
        if ship["shipment_id"] in self.voided:
            return False
        now = datetime.now(UTC).isoformat()
        event = {
            "type": event_type,
            "version": 1,
            "shipment_id": ship["shipment_id"],
            "order_number": ship["order_number"],
            "occurred_at": now,
            **({"delivered_at": now} if event_type == "shipment.delivered" else {}),
            **extra,
        }
        await publish(producer, topics.FULFILLMENT_EVENTS, [(ship["order_number"], event)])
        self.counts[event_type] = self.counts.get(event_type, 0) + 1
        return True

    async def _play(self, producer: AIOKafkaProducer, ship: dict[str, Any]) -> None:
        tracking = f"TRK{self.rng.randrange(10**9):09d}"
        ok = (
            await self._step(producer, ship, "shipment.picked")
            and await self._step(producer, ship, "shipment.packed")
            and await self._step(producer, ship, "shipment.dispatched", carrier="SF Express", tracking_number=tracking)
        )
        if ok and self.rng.random() < self.exception_rate:
            kind = self.rng.choice(["lost", "damaged", "refused"])
            ok = await self._step(producer, ship, "shipment.exception", kind=kind, note="simulated")
            # re-shipped with a new tracking number (unless the order was cancelled meanwhile)
            ok = ok and await self._step(
                producer, ship, "shipment.dispatched", carrier="SF Express", tracking_number=tracking + "R"
            )
        if ok:
            await self._step(producer, ship, "shipment.delivered", signed_by="recipient")
