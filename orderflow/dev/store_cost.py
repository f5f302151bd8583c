"""What the per-service cost scripts (orderflow/dev/*_cost.py) share: their arguments, a DocStore that counts
its round trips and writes, a publisher that only counts, consumed records, and the CPU the store's servers
have used."""

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import psutil

from services.runtime.logging import configure
from services.runtime.messages import Incoming, Outgoing
from services.runtime.outbox import Doc, DocStore, Marker


def run_at_levels(
    doc: str | None, service: str, levels_help: str, run: Callable[[str, list[int]], Coroutine[Any, Any, None]]
) -> None:
    """Run a cost script: `run(uri, levels)` with --uri (MONGODB_URI by default) and --levels (increasing positive
    counts, 10,1000,10000 by default; anything else exits naming it), logging only the service's warnings."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"))
    parser.add_argument("--levels", default="10,1000,10000", help=levels_help)
    args = parser.parse_args()
    try:
        levels = [int(x) for x in args.levels.split(",")]
    except ValueError:
        sys.exit(f"--levels must be comma-separated integers, got {args.levels!r}")
    if levels != sorted(levels) or levels[0] < 1:
        sys.exit(f"--levels must be increasing positive counts, got {levels}")
    configure(service, level="WARNING")  # per-message INFO lines would be most of the CPU measured
    asyncio.run(run(args.uri, levels))


class Counting(DocStore):
    """DocStore that counts its round trips and the documents it writes."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: Counter[str] = Counter()

    async def load_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        """Counted load (an empty one makes no round trip)."""
        wanted = list(keys)
        self.calls["load"] += 1 if wanted else 0
        return await super().load_many(wanted)

    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        """Counted save (one call is an insert_many and/or a bulk_write)."""
        written = await super().save_many(docs)
        self.calls["save"] += 1 if written else 0
        self.calls["written"] += len(written)
        return written

    async def mark(self, marker: Marker) -> None:
        """Counted relay marker insert."""
        self.calls["marker"] += 1
        await super().mark(marker)

    async def unmark(self, marker_id: str, due: float) -> None:
        """Counted relay marker delete."""
        self.calls["marker"] += 1
        await super().unmark(marker_id, due)


class Sink:
    """A publisher that counts what it is given."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_all(self, messages: list[Outgoing]) -> None:
        """Count the messages."""
        self.sent += len(messages)


def record(topic: str, offset: int, key: str, value: bytes) -> Incoming:
    """A consumed record of partition 0."""
    return Incoming(topic, 0, offset, key, value)


def server_cpu() -> float:
    """CPU seconds used so far by every FerretDB and PostgreSQL process on the machine."""
    total = 0.0
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            name = (p.info["name"] or "") + " ".join(p.info["cmdline"] or [])[:80]
            if "ferretdb" in name or "postgres" in name:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total
