"""An in-memory document store with DocStore's interface and guarantees, for tests without servers."""

import copy
from collections.abc import Iterable
from typing import Any

from services.runtime.outbox import ConflictError, Doc, Store, check_increment


class MemoryDocStore(Store):
    """Per-key documents kept in a dict: version-guarded writes (ConflictError on a lost race, the other
    documents still written, like an unordered bulk write), inbox, outbox, counters; rows are copied in and
    out, so nothing a handler holds aliases what is stored."""

    def __init__(self, rows: dict[str, dict[str, Any]] | None = None) -> None:
        """A fresh store, or another process's view of `rows` (a second replica, a restart)."""
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {} if rows is None else rows

    async def load_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        """Load the documents for `keys`; missing ones come back empty at version 0."""
        docs = {k: Doc(k, 0, None) for k in dict.fromkeys(keys)}
        for key in docs:
            if key in self.rows:
                docs[key] = self._loaded(copy.deepcopy(self.rows[key]))
        return docs

    async def save_many(self, docs: Iterable[Doc]) -> list[Doc]:
        """Write every dirty document, each only if nobody wrote it since it was loaded (else ConflictError)."""
        written = [d for d in docs if d.dirty]
        lost = [d.key for d in written if self.rows.get(d.key, {}).get("v", 0) != d.version]
        for d in written:
            if d.key not in lost:
                self.rows[d.key] = copy.deepcopy(self._body(d))
                d.version += 1
                d.dirty = False
        if lost:
            raise ConflictError(f"{len(lost)} document(s) changed by another replica")
        return written

    async def clear_pending(self, docs: Iterable[Doc]) -> None:
        """Clear published outputs of documents nobody has written since."""
        for d in docs:
            row = self.rows.get(d.key)
            if row is not None and row["v"] == d.version:
                row["pending"] = []

    async def increment(self, key: str, by: int) -> int:
        """Atomically add `by` to the counter document `key` (created at 0); the new value."""
        check_increment(key, by)
        row = self.rows.setdefault(key, {"_id": key, "n": 0})
        row["n"] += by
        return int(row["n"])

    async def scan(self, prefix: str) -> dict[str, dict[str, Any] | None]:
        """The stored state of every document whose key starts with `prefix` (copies)."""
        return {k: copy.deepcopy(v.get("state")) for k, v in self.rows.items() if k.startswith(prefix) and "v" in v}

    def find(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """The stored rows whose key starts with `prefix` (copies), for tests and read helpers."""
        return {k: copy.deepcopy(v) for k, v in self.rows.items() if k.startswith(prefix)}
