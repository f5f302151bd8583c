"""Fulfillment's read model of every order's timeline (handbook 2.4.3), built from `orders.status`.

One timeline per order (`store.Timeline`) with every status in the order it was published
(deduplicated by event id) and, per status: time, revision, reasons, a short summary of the details,
the promise date and who or which rule decided. Order-number aliases (shared with the shipment
handlers) let customer service look an order up by its number. Only a summary of the details is
kept, and contact data is never stored: personal keys are dropped and values quoted in reasons about
the customer's contact or address are masked.
"""

import re
from dataclasses import replace
from typing import Any

from contracts.common import Reason
from contracts.public import OrderStatus
from services.fulfillment.store import Entry, Said, Timeline

ENTRY_LIMIT = 500  # per order; the oldest entries beyond it are counted, not kept
SUMMARY_LIMIT = 300
PRIVATE_KEYS = frozenset(
    {"ship_to", "customer", "contact", "contact_name", "recipient", "phone", "email", "address", "line1", "line2"}
)
_PRIVATE_FIELD = re.compile(r"^(ship_to|customer\.(?!customer_id$))")
_QUOTED = re.compile(r"'[^']*'")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _scrub(text: str) -> str:
    return _EMAIL.sub("[email]", text)


def _reason(r: Reason) -> Said:
    message = r.message
    if r.field and _PRIVATE_FIELD.match(r.field):
        message = _QUOTED.sub("'…'", message)  # e.g. intake echoes a malformed phone or email
    return Said(r.code, r.field, _scrub(message))


def _lines(items: list[Any]) -> str | None:
    if not all(isinstance(i, dict) and "sku" in i and "quantity" in i for i in items):
        return None
    return ", ".join(f"{i['sku']}×{i['quantity']}" for i in items)


def _value(v: Any) -> str:
    if isinstance(v, dict):
        inner = [f"{k} {_value(x)}" for k, x in v.items() if k not in PRIVATE_KEYS and x not in (None, {}, [])]
        return "{" + ", ".join(inner) + "}"
    if isinstance(v, list):
        if not v:
            return "-"
        lines = _lines(v)
        if lines is not None:
            return lines
        if all(isinstance(i, dict) and "warehouse" in i and isinstance(i.get("lines"), list) for i in v):
            return "; ".join(f"{i['warehouse']}: {_lines(i['lines']) or _value(i['lines'])}" for i in v)
        if all(isinstance(i, dict) and "code" in i and "amount" in i for i in v):
            return ", ".join(f"{i['code']} {i['amount']}" for i in v)
        return ", ".join(_value(i) for i in v)
    return str(v)


def _option(name: str, v: Any) -> str | None:
    if not v:
        return None
    if name == "wait" and isinstance(v, dict):
        return f"wait (until {v['promise_date']})" if v.get("promise_date") else None
    if name == "substitute" and isinstance(v, dict):
        subs = sorted({s for options in v.values() if isinstance(options, list) for s in options})
        return f"substitute ({', '.join(subs)})" if subs else None
    if name == "remainder" and isinstance(v, list):  # what becomes of the rest of a partial shipment
        return f"rest {' or '.join(map(str, v))}"
    return name


def summarize(details: dict[str, Any]) -> str:
    """A one-line summary of a status's details, without personal data."""
    parts: list[str] = []
    for k, v in details.items():
        if k in PRIVATE_KEYS or v is None:
            continue
        if k == "options" and isinstance(v, dict):
            offered = [o for o in (_option(n, x) for n, x in v.items()) if o]
            parts.append(f"options: {', '.join(offered) or 'none'}")
        elif k == "charges" and not v:
            continue
        elif v is True:
            parts.append(k)
        elif v is False:
            parts.append(f"{k}: no")
        else:
            parts.append(f"{k.replace('_', ' ')}: {_value(v)}")
    text = _scrub("; ".join(parts))
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def entry(msg: OrderStatus, at: int | None = None) -> Entry:
    """One step of the timeline; `at`: the `orders.status` offset it was consumed at (None: recorded by
    fulfillment with the decision that publishes it)."""
    return Entry(
        msg.event_id,
        msg.status,
        msg.occurred_at,
        msg.revision,
        msg.order_number,
        tuple(_reason(r) for r in msg.reasons),
        msg.promise_date,
        summarize(msg.details),
        msg.decided_by,
        at,
    )


def start(order_key: str, msg: OrderStatus, earlier: tuple[Entry, ...] = ()) -> Timeline:
    """A new timeline for the order `msg` is about, beginning with `earlier` entries (those of a cancel
    that came before the order)."""
    return Timeline(order_key, msg.channel, msg.channel_order_ref, entries=earlier)


def append(state: Timeline, msg: OrderStatus, at: int | None = None) -> Timeline | None:
    """The timeline with `msg` appended, or None when it is already there (a republished status)."""
    if any(e.event_id == msg.event_id for e in state.entries):
        return None
    entries = (*state.entries, entry(msg, at))
    return replace(
        state,
        order_number=state.order_number or msg.order_number,
        entries=entries[-ENTRY_LIMIT:],
        dropped=state.dropped + max(0, len(entries) - ENTRY_LIMIT),
    )


def settle(state: Timeline, event_id: str, at: int) -> Timeline | None:
    """The copy of a status fulfillment recorded with its decision came back at offset `at`: the entries
    recorded after it that were published before it (consumed at a lower offset: another service's status on
    its way while fulfillment decided) move before it, so the timeline keeps topic order. None when nothing
    moves (the usual case: no write)."""
    index = next((i for i, e in enumerate(state.entries) if e.event_id == event_id), None)
    if index is None or state.entries[index].at is not None:
        return None
    later = state.entries[index + 1 :]
    earlier = tuple(e for e in later if e.at is not None and e.at < at)
    if not earlier:
        return None
    rest = tuple(e for e in later if not (e.at is not None and e.at < at))
    return replace(state, entries=(*state.entries[:index], *earlier, state.entries[index], *rest))


def last_status(state: Timeline | None) -> str | None:
    """The latest status of the order as published (refusals and ignored messages repeat it)."""
    return state.entries[-1].status if state and state.entries else None
