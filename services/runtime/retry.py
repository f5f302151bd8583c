"""Every retry path waits with capped exponential backoff and jitter, and every retry is counted."""

import asyncio
import random

from prometheus_client import Counter

RETRIES = Counter(
    "orderflow_retries",
    "Retries after a failure, by service, retry path (batch, relay...) and kind of failure (transient: the store or"
    " the broker unreachable, or a race lost to another replica; fault: any other error outside the handlers)",
    ["service", "path", "kind"],
)
RETRY_WAIT = Counter("orderflow_retry_wait_seconds", "Time waited before retries", ["service", "path"])
KINDS = ("transient", "fault")


class Backoff:
    """Delays between consecutive failures of one retry path: the n-th is drawn in [c/2, c] with
    c = min(cap, first * 2^(n-1)) (so replicas that failed together do not retry together, and never sooner
    than half the step); `reset` after a success starts again from `first`."""

    def __init__(
        self, service: str, path: str, first: float = 0.2, cap: float = 10.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff for {service}/{path}: need 0 < first ({first}) <= cap ({cap})")
        self.service, self.path, self.first, self.cap = service, path, first, cap
        self.rng = rng or random.Random()
        self.failures = 0

    def next(self, kind: str) -> float:
        """Count one more failure of `kind` (transient or fault) and return the delay before the retry."""
        if kind not in KINDS:
            raise ValueError(f"retry kind {kind!r}: expected one of {', '.join(KINDS)}")
        self.failures += 1
        ceiling = min(self.cap, self.first * 2.0 ** min(self.failures - 1, 40))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        RETRIES.labels(self.service, self.path, kind).inc()
        RETRY_WAIT.labels(self.service, self.path).inc(delay)
        return delay

    async def wait(self, kind: str) -> float:
        """Count the failure, sleep the delay, and return it."""
        delay = self.next(kind)
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits `first` again."""
        self.failures = 0
