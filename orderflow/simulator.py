"""A warehouse and carrier simulator: plays pick, pack, dispatch and delivery for opened shipments."""

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import topics
from orderflow.bus import publish

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
        group: str = "orderflow-simulator",
    ) -> None:
        self.bootstrap, self.exception_rate, self.delay = bootstrap, exception_rate, delay
        self.rng = random.Random(seed)
        self.group = group
        self.voided: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set."""
        consumer = AIOKafkaConsumer(
            topics.FULFILLMENT_SHIPMENTS,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=300)
                for recs in batch.values():
                    for r in recs:
                        self._on(producer, r.value)
            for t in list(self.tasks):
                t.cancel()
        finally:
            await consumer.stop()
            await producer.stop()

    def _on(self, producer: AIOKafkaProducer, raw: bytes | None) -> None:
        import json

        try:
            msg = json.loads(raw or b"")
        except ValueError:
            return
        if msg.get("type") == "shipment.voided":
            self.voided.add(msg["shipment_id"])
        elif msg.get("type") == "shipment.opened":
            task = asyncio.create_task(self._play(producer, msg))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _step(self, producer: AIOKafkaProducer, ship: dict[str, Any], event_type: str, **extra: Any) -> bool:
        await asyncio.sleep(self.rng.uniform(*self.delay))
        if ship["shipment_id"] in self.voided:
            return False
        event = {
            "type": event_type,
            "version": 1,
            "shipment_id": ship["shipment_id"],
            "order_number": ship["order_number"],
            "occurred_at": datetime.now(UTC).isoformat(),
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
        if not ok:
            return
        if self.rng.random() < self.exception_rate:
            await self._step(
                producer,
                ship,
                "shipment.exception",
                kind=self.rng.choice(["lost", "damaged", "refused"]),
                note="simulated",
            )
            await self._step(
                producer, ship, "shipment.dispatched", carrier="SF Express", tracking_number=tracking + "R"
            )
        await self._step(
            producer, ship, "shipment.delivered", signed_by="recipient", delivered_at=datetime.now(UTC).isoformat()
        )
