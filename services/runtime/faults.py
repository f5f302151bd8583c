"""Fault injection for the chaos suite (scenario 10): a handler fails at a random point after it has recorded
something. Off unless ORDERFLOW_FAULT_RATE (share of messages, e.g. 0.01) is set; then ORDERFLOW_FAULT_SEED
makes the choice of messages and points reproducible. The runtime runs each handler inside `message(origin)`
and calls `recorded()` after each change a handler stages; both cost one context-variable lookup when off."""

import contextlib
import hashlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

MAX_POINT = 3  # a chosen message fails after its 1st, 2nd or 3rd recorded change (or at its end if fewer)


class InjectedFault(Exception):
    """Raised on purpose by the chaos suite's fault injection; never raised in production."""


@dataclass
class _Plan:
    fail_after: int  # 0: this message is not chosen
    recorded: int = 0
    fired: bool = False


_current: ContextVar[_Plan | None] = ContextVar("orderflow_fault_plan", default=None)


def rate() -> float:
    """The share of messages to fail (ORDERFLOW_FAULT_RATE; 0 = off); a bad value is refused by name."""
    raw = os.environ.get("ORDERFLOW_FAULT_RATE", "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        raise ValueError(f"ORDERFLOW_FAULT_RATE={raw!r}: expected a share between 0 and 1, e.g. 0.01") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"ORDERFLOW_FAULT_RATE={raw!r}: expected a share between 0 and 1, e.g. 0.01")
    return value


_RATE = rate()


def _draw(origin: str, salt: str) -> int:
    seed = os.environ.get("ORDERFLOW_FAULT_SEED", "chaos")
    return int.from_bytes(hashlib.sha256(f"{seed}|{salt}|{origin}".encode()).digest()[:8], "big")


def plan_for(origin: str, share: float) -> int:
    """After which recorded change the message `origin` fails (1..MAX_POINT), or 0 when it is not chosen: the
    same answer for the same origin, so a redelivered message fails the same way."""
    if share <= 0 or _draw(origin, "chosen") / 2**64 >= share:
        return 0
    return 1 + _draw(origin, "point") % MAX_POINT


@contextlib.contextmanager
def message(origin: str, share: float | None = None) -> Iterator[None]:
    """Around one message's handler: a chosen message that recorded something and has not failed yet fails
    when its handler returns."""
    share = _RATE if share is None else share
    if share <= 0:
        yield
        return
    plan = _Plan(plan_for(origin, share))
    token = _current.set(plan)
    try:
        yield
        if plan.fail_after and plan.recorded and not plan.fired:
            plan.fired = True
            raise InjectedFault(f"injected fault at the end of the handler, after {plan.recorded} recorded change(s)")
    finally:
        _current.reset(token)


def recorded() -> None:
    """After a handler staged a change: a chosen message fails here once it reached its point."""
    plan = _current.get()
    if plan is None or not plan.fail_after or plan.fired:
        return
    plan.recorded += 1
    if plan.recorded >= plan.fail_after:
        plan.fired = True
        raise InjectedFault(f"injected fault after recorded change #{plan.recorded}")
