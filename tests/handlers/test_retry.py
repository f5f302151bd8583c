"""Backoff everywhere (issue 17): a batch that fails outside its handlers, transiently (store or broker, a lost
race) or not (parsing, prefetch, save), is retried only after a capped exponential backoff with jitter, and
each retry is counted in `orderflow_retries_total`; a success starts the backoff again from its first step."""

import random
import time
from collections.abc import Iterable

import pytest
from prometheus_client import REGISTRY

from contracts import topics
from services.intake.app import CONSUMES, NAME, build
from services.runtime.memory import MemoryDocStore
from services.runtime.outbox import ConflictError, Doc
from services.runtime.retry import Backoff
from tests.factories import key, submitted
from tests.handlers.harness import Harness


def _retries(kind: str, path: str = "batch") -> float:
    return REGISTRY.get_sample_value("orderflow_retries_total", {"service": NAME, "path": path, "kind": kind}) or 0.0


def _waited(path: str = "batch") -> float:
    return REGISTRY.get_sample_value("orderflow_retry_wait_seconds_total", {"service": NAME, "path": path}) or 0.0


class Failing(MemoryDocStore):
    """A store whose next `loads` prefetches raise `load_error` and next `saves` writes raise a lost race."""

    def __init__(self, loads: int = 0, saves: int = 0, load_error: Exception | None = None) -> None:
        super().__init__()
        self.loads, self.saves, self.load_error = loads, saves, load_error or ValueError("unreadable row")

    async def load_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        if self.loads:
            self.loads -= 1
            raise self.load_error
        return await super().load_many(keys)

    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        if self.saves:
            self.saves -= 1
            raise ConflictError("1 document(s) changed by another replica")
        return await super().save_many(docs)


async def _deliver(h: Harness, ref: str) -> tuple[bool, float]:
    """One delivery of an order (the in-memory broker raises what the subscriber raised: the rewind)."""
    order = submitted(ref)
    started = time.monotonic()
    try:
        await h.send(topics.ORDERS_SUBMITTED, order, key(order))
    except Exception:
        return False, time.monotonic() - started
    return True, time.monotonic() - started


async def test_a_fault_outside_the_handlers_is_retried_with_growing_counted_delays_then_reset() -> None:
    store = Failing(loads=2)
    async with Harness(NAME, CONSUMES, lambda _, publisher: build(store, publisher)) as h:
        faults, waited = _retries("fault"), _waited()
        first = await _deliver(h, "WEB-RETRY-1")
        second = await _deliver(h, "WEB-RETRY-1")  # the redelivery of the rewound batch
        assert not first[0] and not second[0]
        assert first[1] >= 0.1 and second[1] >= 0.2  # [c/2, c] with c = 0.2 s, then 0.4 s
        assert _retries("fault") - faults == 2
        assert 0.3 <= _waited() - waited <= 0.6
        assert (await _deliver(h, "WEB-RETRY-1"))[0]
        assert h.statuses() == ["received"] and h.processor.store is store
        store.loads = 1
        before = _waited()
        assert not (await _deliver(h, "WEB-RETRY-2"))[0]
        assert _waited() - before <= 0.2  # after the success the backoff starts again from its first step


async def test_a_transient_failure_is_counted_as_transient() -> None:
    store = Failing(saves=1)
    async with Harness(NAME, CONSUMES, lambda _, publisher: build(store, publisher)) as h:
        transient = _retries("transient")
        assert not (await _deliver(h, "WEB-RETRY-3"))[0]
        assert _retries("transient") - transient == 1
        assert (await _deliver(h, "WEB-RETRY-3"))[0] and h.statuses() == ["received"]


def test_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff("test", "unit", first=0.2, cap=10.0, rng=random.Random(7))
    delays = [backoff.next("transient") for _ in range(12)]
    for n, delay in enumerate(delays):
        ceiling = min(10.0, 0.2 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.next("fault") <= 0.2


def test_bad_backoff_settings_and_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff("test", "unit", first=0.0)
    with pytest.raises(ValueError, match="retry kind"):
        Backoff("test", "unit").next("oops")
