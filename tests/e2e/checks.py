"""Reading `orders.status` back and checking what the channel saw."""

import asyncio
import time
from collections import defaultdict
from typing import Any

from contracts import topics
from orderflow import bus
from services.runtime.status import enters_state


async def statuses_until(
    bootstrap: str, start: dict[int, int], expected: dict[str, str] | dict[str, tuple[str, ...]], timeout: float
) -> dict[str, list[dict[str, Any]]]:
    """Follow `orders.status` from `start` until every key reached its expected status, or one of them when a
    tuple is given (or time runs out); then return every status message of those keys."""
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    async for msg in bus.follow(bootstrap, topics.ORDERS_STATUS, start, idle=0.5):
        key = msg.get("_key")
        want = expected.get(key) if key else None
        if want is not None and msg["status"] in ((want,) if isinstance(want, str) else want):
            done.add(key)
        if len(done) == len(expected) or time.monotonic() > deadline:
            break
    await asyncio.sleep(2.0)  # late duplicates, if any, arrive before the final read
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in await bus.read(bootstrap, topics.ORDERS_STATUS, start):
        if msg.get("_key") in expected:
            seen[msg["_key"]].append(msg)
    return seen


def transitions(msgs: list[dict[str, Any]]) -> dict[tuple[Any, str], set[str]]:
    """(revision, status) -> the distinct event ids that announced it (refusals, ignores and restated
    cancellations left out: they repeat a state, they do not enter one)."""
    out: dict[tuple[Any, str], set[str]] = defaultdict(set)
    for m in msgs:
        if enters_state(m.get("details") or {}):
            out[(m.get("revision"), m["status"])].add(m["event_id"])
    return out
