"""The only code that touches fulfillment's collection: order documents, order-number aliases, supply
links and the order timelines (the read model behind `orderflow track`)."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from contracts.public import CHANNELS
from services.fulfillment import timeline

Collection = AsyncCollection[dict[str, Any]]


async def setup(collection: Collection) -> None:
    """Indexes fulfillment relies on."""
    await collection.create_index("state.order_number", sparse=True)


def is_order_key(ref: str) -> bool:
    """Whether `ref` is a "channel:channel_order_ref" key rather than an order number."""
    channel, sep, rest = ref.partition(":")
    return bool(sep and rest) and channel in CHANNELS


async def find_timeline(collection: Collection, ref: str) -> dict[str, Any] | None:
    """The timeline of an order given as "channel:channel_order_ref" or by its order number; _id lookups only
    (the alias, then the timeline), so it stays instant whatever the number of orders."""
    ref = ref.strip()
    key: str | None = ref if is_order_key(ref) else None
    if key is None:
        alias = await collection.find_one({"_id": timeline.alias(ref)}, {"state": 1})
        key = ((alias or {}).get("state") or {}).get("order_key")
    if key is None:
        return None
    doc = await collection.find_one({"_id": timeline.key(key)}, {"state": 1})
    state = (doc or {}).get("state")
    return dict(state) if state else None
