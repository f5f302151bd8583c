"""The only code that touches review's collection: orders, master data, and credit exposure.

Exposure is one per-key document per customer (`credit:<customer>`, state `{orders: {order_number:
cents}, total: cents}`), loaded and written with the batch like every other document, and before
the order documents: the write is version-guarded, so a replica that raced another retries its batch
before any approval is stored, and `total` stays equal to the sum of the open approved orders.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.review.domain import exposure_of

Collection = AsyncCollection[dict[str, Any]]


async def setup(collection: Collection) -> None:
    """Indexes review relies on."""
    await collection.create_index("state.order_number", sparse=True)


CREDIT = "credit:"


def credit_key(customer_id: str) -> str:
    """The document holding the customer's credit exposure."""
    return f"{CREDIT}{customer_id}"


async def exposure(collection: Collection, customer_id: str) -> tuple[int, dict[str, int]]:
    """The customer's open exposure total and per-order claims (cents), as last written."""
    doc = await collection.find_one({"_id": credit_key(customer_id)})
    return exposure_of((doc or {}).get("state"))
