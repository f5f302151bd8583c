"""`orderflow track`: every step of one order, for customer service, from fulfillment's read model.

Reads only fulfillment's own database (`<MONGODB_DATABASE>_fulfillment`, collection `fulfillment`),
by `_id`: the order-number alias, then the order document, which holds the timeline. No other service's data
is read.
"""

import io
import os
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from services.fulfillment import store
from services.runtime.outbox import DocStore
from services.runtime.service import mongo_client
from services.runtime.settings import ServiceSettings

SERVICE = "fulfillment"


def connection() -> tuple[str, str]:
    """The Mongo URI and base database name: MONGODB_URI / MONGODB_DATABASE, else the local stack."""
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        from orderflow.dev import stack

        uri = stack.env()["MONGODB_URI"]
    return uri, os.environ.get("MONGODB_DATABASE") or "orderflow"


def client(uri: str) -> AsyncMongoClient[dict[str, Any]]:
    """A client of the store at `uri`, with the credentials of the environment when set (MONGODB_USERNAME and
    MONGODB_PASSWORD(_FILE), as the services take them; TLS options come with the URI)."""
    return mongo_client(ServiceSettings().model_copy(update={"mongodb_uri": uri}))


async def fetch(ref: str, uri: str | None = None, database: str | None = None) -> dict[str, Any] | None:
    """The timeline of an order given as "channel:channel_order_ref" or by its order number (None: unknown)."""
    default_uri, default_db = connection() if uri is None or database is None else (uri, database)
    mongo = client(uri or default_uri)
    try:
        collection = mongo[f"{database or default_db}_{SERVICE}"][SERVICE]
        return await store.find_timeline(DocStore(collection), ref)
    finally:
        await mongo.close()


def _reasons(entry: dict[str, Any]) -> str:
    rows = []
    for r in entry.get("reasons", []):
        where = f" ({r['field']})" if r.get("field") else ""
        rows.append(f"{r['code']}{where}: {r['message']}")
    return "\n".join(rows)


def _time(iso: str) -> str:
    offset = iso[-6:] if len(iso) > 19 and iso[-6] in "+-" else ""
    return iso.replace("T", " ")[:19] + ("" if offset in ("", "+00:00") else offset)


def _title(tl: dict[str, Any]) -> str:
    utc = all(e["occurred_at"].endswith("+00:00") for e in tl.get("entries", []))
    dropped = f"  ({tl['dropped']} earliest steps not kept)" if tl.get("dropped") else ""
    return (
        f"{tl.get('order_number') or '(no order number yet)'}  {tl['order_key']}{'  times UTC' if utc else ''}{dropped}"
    )


def _steps(tl: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return list(enumerate(tl.get("entries", []), start=tl.get("dropped", 0) + 1))


WIDE = 120  # below this many columns the timeline is printed as a list rather than a table


def table(tl: dict[str, Any]) -> Table:
    """The timeline as a table: one row per status, in the order they were published."""
    t = Table(title=_title(tl), title_justify="left", show_lines=True)
    for name, kw in (
        ("#", {"justify": "right", "no_wrap": True}),
        ("time", {"no_wrap": True}),
        ("status", {"no_wrap": True}),
        ("rev", {"justify": "right", "no_wrap": True}),
        ("promise", {"no_wrap": True}),
        ("reasons", {"ratio": 2, "overflow": "fold"}),
        ("details", {"ratio": 2, "overflow": "fold"}),
        ("decided by", {"ratio": 1, "overflow": "fold"}),
    ):
        t.add_column(name, **kw)
    for n, e in _steps(tl):
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


def lines(tl: dict[str, Any]) -> list[str]:
    """The timeline as plain lines, one block per step (for narrow terminals)."""
    out = [_title(tl)]
    for n, e in _steps(tl):
        head = [f"{n:>3}  {_time(e['occurred_at'])}  {e['status']}"]
        if e.get("revision") is not None:
            head.append(f"rev {e['revision']}")
        if e.get("promise_date"):
            head.append(f"promise {e['promise_date']}")
        out.append("  ".join(head) + f"  by {e.get('decided_by') or '?'}")
        out += [f"     reason  {r}" for r in _reasons(e).splitlines()]
        if e.get("details"):
            out.append(f"     details {e['details']}")
    return out


def show(console: Console, tl: dict[str, Any]) -> None:
    """Print the timeline: a table on a wide console, a list on a narrow one."""
    if console.width >= WIDE:
        console.print(table(tl))
    else:
        for line in lines(tl):
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def render(tl: dict[str, Any], width: int = 160) -> str:
    """The timeline as plain text, as `orderflow track` prints it on a console `width` columns wide."""
    console = Console(width=width, file=io.StringIO(), record=True)
    show(console, tl)
    return console.export_text()
