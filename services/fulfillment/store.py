"""The only code that touches fulfillment's collection: order documents and order-number aliases."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Collection = AsyncCollection[dict[str, Any]]


async def setup(collection: Collection) -> None:
    """Indexes fulfillment relies on."""
    await collection.create_index("state.order_number", sparse=True)
