"""The only code that touches intake's collection: order documents and the order-number sequence."""

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

Collection = AsyncCollection[dict[str, Any]]


async def setup(collection: Collection) -> None:
    """Indexes intake relies on (the sequence and order documents are keyed by _id)."""
    await collection.create_index("state.order_number", sparse=True)


async def take_numbers(collection: Collection, day: str, count: int) -> list[int]:
    """Atomically take `count` consecutive numbers of `day`'s sequence: unique across any number of replicas."""
    doc = await collection.find_one_and_update(
        {"_id": f"seq:{day}"}, {"$inc": {"n": count}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert doc is not None
    return list(range(int(doc["n"]) - count + 1, int(doc["n"]) + 1))
