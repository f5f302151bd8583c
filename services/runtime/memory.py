"""An in-memory document store with DocStore's interface and guarantees, for tests without servers."""

import copy
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from services.runtime.outbox import ConflictError, Doc, Marker, Store, check_increment


class MemoryDocStore(Store):
    """Per-key documents kept in a dict: version-guarded writes (ConflictError on a lost race, the other
    documents still written, like an unordered bulk write), inbox, outbox, counters; rows are copied in and
    out, so nothing a handler holds aliases what is stored."""

    def __init__(self, rows: dict[str, dict[str, Any]] | None = None, markers: dict[str, Marker] | None = None) -> None:
        """A fresh store, or another process's view of `rows` and `markers` (a second replica, a restart)."""
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {} if rows is None else rows
        self.markers: dict[str, Marker] = {} if markers is None else markers

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

    async def mark(self, marker: Marker) -> None:
        """Store a relay marker."""
        self.markers[marker.id] = marker

    async def unmark(self, marker_id: str, due: float) -> None:
        """Delete a relay marker, unless someone has re-armed it since."""
        if marker_id in self.markers and self.markers[marker_id].due == due:
            del self.markers[marker_id]

    async def due_markers(self, now: float, limit: int) -> list[Marker]:
        """Up to `limit` relay markers due at `now`, earliest first."""
        return sorted((m for m in self.markers.values() if m.due <= now), key=lambda m: m.due)[:limit]

    async def claim(self, marker: Marker, until: float) -> bool:
        """Take a due marker until `until`; False if another process took it first."""
        current = self.markers.get(marker.id)
        if current is None or current.due != marker.due:
            return False
        self.markers[marker.id] = replace(current, due=until)
        return True

    async def scan(self, prefix: str) -> dict[str, dict[str, Any] | None]:
        """The stored state of every document whose key starts with `prefix` (copies)."""
        return {k: copy.deepcopy(v.get("state")) for k, v in self.rows.items() if k.startswith(prefix) and "v" in v}

    def find(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """The stored rows whose key starts with `prefix` (copies), for tests and read helpers."""
        return {k: copy.deepcopy(v) for k, v in self.rows.items() if k.startswith(prefix)}
