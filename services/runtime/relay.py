"""The outbox relay: events written onto any document are published within seconds even if no message ever
touches that document again (issue 17), by whichever replica of the service finds them first.

Every batch that writes events first stores a small marker naming the documents and the versions it writes
(`Batch.commit`), and deletes it once the events are acknowledged by the broker. A marker still there
RELAY_GRACE seconds later belongs to a batch that crashed or whose publish failed. Each replica polls the
marker collection (empty at rest: one indexed query on no rows, every RELAY_MAX_INTERVAL at most), claims a
due marker with a compare-and-set on its `due` (one replica wins; it holds it for RELAY_LEASE seconds), loads
the documents, publishes their pending events with their original ids, clears them under the version guard,
and deletes the marker. A consumer may see an event twice (the batch published it and died before deleting
its marker), never with a new id: consumers deduplicate on `event_id`.

A marker naming a version not yet written (the batch crashed before its write, or a paused process has not
written yet) is kept and checked again every RELAY_LEASE seconds, for at most RELAY_MAX_WAIT seconds.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from prometheus_client import Counter

from services.runtime.batch import TRANSIENT, Publisher, publish_pending
from services.runtime.outbox import Marker, Store
from services.runtime.retry import Backoff

log = structlog.get_logger()

RELAY_MIN_INTERVAL = 0.2  # seconds between polls while markers keep coming due
RELAY_MAX_INTERVAL = 2.0  # ... growing to this at rest (with RELAY_GRACE: events out within ~5 s)
RELAY_LEASE = 10.0  # a claimed marker is another replica's to take again after this
RELAY_MAX_WAIT = 600.0  # a marker whose writes never landed is dropped after this
RELAY_BATCH = 50  # markers claimed per poll

RELAYED = Counter(
    "orderflow_relay_events", "Pending events published by the outbox relay (a batch did not publish them)", ["service"]
)
RELAY_POLLS = Counter("orderflow_relay_polls", "Relay queries for due markers", ["service"])


class Relay:
    """One replica's relay over its service's store (see the module docstring)."""

    def __init__(
        self, service: str, store: Store, publisher: Publisher, clock: Callable[[], float] = time.time
    ) -> None:
        self.service, self.store, self.publisher, self.clock = service, store, publisher, clock
        self.backoff = Backoff(service, "relay", first=RELAY_MIN_INTERVAL, cap=30.0)
        self.interval = RELAY_MAX_INTERVAL
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Relay every marker due now that no other replica claims first; returns how many were relayed."""
        now = self.clock()
        RELAY_POLLS.labels(self.service).inc()
        relayed = 0
        for marker in await self.store.due_markers(now, RELAY_BATCH):
            if await self.store.claim(marker, now + RELAY_LEASE):
                await self._relay(marker, now, now + RELAY_LEASE)
                relayed += 1
        return relayed

    async def _relay(self, marker: Marker, now: float, claimed_due: float) -> None:
        docs = await self.store.load_many(key for key, _ in marker.docs)
        with_pending = [d for d in docs.values() if d.pending]
        out = await publish_pending(self.store, self.publisher, self.service, with_pending, [])
        RELAYED.labels(self.service).inc(len(out))
        await self.store.clear_pending(with_pending)
        landed = all(docs[key].version >= version for key, version in marker.docs)
        if landed or now - marker.created > RELAY_MAX_WAIT:
            await self.store.unmark(marker.id, claimed_due)
        log.info(
            "relayed",
            marker=marker.id,
            docs=len(marker.docs),
            sent=len(out),
            age_s=round(now - marker.created, 1),
            kept=not landed and now - marker.created <= RELAY_MAX_WAIT,
        )

    async def run(self) -> None:
        """Poll until cancelled: fast while markers come due, slowing to RELAY_MAX_INTERVAL at rest; a failure
        waits with the shared backoff (counted in orderflow_retries_total{path="relay"})."""
        while True:
            try:
                relayed = await self.run_once()
            except Exception as exc:
                kind = "transient" if isinstance(exc, TRANSIENT) else "fault"
                delay = self.backoff.next(kind)
                log.warning("relay_retry", kind=kind, error=f"{type(exc).__name__}", retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self.interval = RELAY_MIN_INTERVAL if relayed else min(RELAY_MAX_INTERVAL, self.interval * 2)
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        """Run the relay in the background of the running event loop (async: FastStream runs sync hooks in a
        worker thread, which has no event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"{self.service}-relay")

    async def stop(self) -> None:
        """Stop the background relay (a marker it holds is taken again by a replica after RELAY_LEASE)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
