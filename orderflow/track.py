"""`orderflow track`: every step of one order, for customer service, from fulfillment's read model.

Reads only fulfillment's own database (`<MONGODB_DATABASE>_fulfillment`, collection `fulfillment`),
by `_id`: the order-number alias, then the timeline document. No other service's data is read.
"""

import io
import os
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from services.fulfillment import store

SERVICE = "fulfillment"


def connection() -> tuple[str, str]:
    """The Mongo URI and base database name: MONGODB_URI / MONGODB_DATABASE, else the local stack."""
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        from orderflow import stack

        uri = stack.env()["MONGODB_URI"]
    return uri, os.environ.get("MONGODB_DATABASE") or "orderflow"


async def fetch(ref: str, uri: str | None = None, database: str | None = None) -> dict[str, Any] | None:
    """The timeline of an order given as "channel:channel_order_ref" or by its order number (None: unknown)."""
    default_uri, default_db = connection() if uri is None or database is None else (uri, database)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri or default_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        collection = client[f"{database or default_db}_{SERVICE}"][SERVICE]
        return await store.find_timeline(collection, ref)
    finally:
        await client.close()


def _reasons(entry: dict[str, Any]) -> str:
    rows = []
    for r in entry.get("reasons", []):
        where = f" ({r['field']})" if r.get("field") else ""
        rows.append(f"{r['code']}{where}: {r['message']}")
    return "\n".join(rows)


def _time(iso: str) -> str:
    return iso.replace("T", " ")[:19] + (iso[-6:] if iso[-6] in "+-" else "")


def table(tl: dict[str, Any]) -> Table:
    """The timeline as a table: one row per status, in the order they were published."""
    title = f"{tl.get('order_number') or '(no order number)'}  {tl['order_key']}"
    t = Table(title=title, title_justify="left", show_lines=True)
    for name, kw in (
        ("#", {"justify": "right"}),
        ("time", {"no_wrap": True}),
        ("status", {"no_wrap": True}),
        ("rev", {"justify": "right"}),
        ("promise", {"no_wrap": True}),
        ("reasons", {}),
        ("details", {}),
        ("decided by", {}),
    ):
        t.add_column(name, **kw)
    first = tl.get("dropped", 0)
    for n, e in enumerate(tl.get("entries", []), start=first + 1):
        t.add_row(
            str(n),
            _time(e["occurred_at"]),
            e["status"],
            "" if e.get("revision") is None else str(e["revision"]),
            e.get("promise_date") or "",
            _reasons(e),
            e.get("details") or "",
            e.get("decided_by") or "",
        )
    return t


def render(tl: dict[str, Any], width: int = 160) -> str:
    """The timeline table as plain text."""
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(table(tl))
    return console.export_text()
