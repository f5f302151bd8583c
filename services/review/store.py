"""The only code that touches review's collection: orders, master data, and credit exposure counters.

Exposure is one document per customer, `{orders: {order_number: cents}, total: cents}`, changed only
by single-document conditional updates, so any number of review replicas and any redelivery keep
`total` equal to the sum of the open approved orders and never past the ceiling.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Collection = AsyncCollection[dict[str, Any]]


async def setup(collection: Collection) -> None:
    """Indexes review relies on."""
    await collection.create_index("state.order_number", sparse=True)


def _id(customer_id: str) -> str:
    return f"exposure:{customer_id}"


async def exposure(collection: Collection, customer_id: str) -> tuple[int, dict[str, int]]:
    """The customer's open exposure total and per-order claims (cents)."""
    doc = await collection.find_one({"_id": _id(customer_id)})
    return (int(doc.get("total", 0)), dict(doc.get("orders", {}))) if doc else (0, {})


async def claim(collection: Collection, customer_id: str, order_number: str, amount: int, ceiling: int | None) -> bool:
    """Atomically add an order's exposure unless it would pass `ceiling`; True if the claim is held."""
    await collection.update_one({"_id": _id(customer_id)}, {"$setOnInsert": {"total": 0, "orders": {}}}, upsert=True)
    cond: dict[str, Any] = {"_id": _id(customer_id), f"orders.{order_number}": {"$exists": False}}
    if ceiling is not None:
        cond["total"] = {"$lte": ceiling - amount}
    result = await collection.update_one(cond, {"$set": {f"orders.{order_number}": amount}, "$inc": {"total": amount}})
    if result.modified_count == 1:
        return True
    _, orders = await exposure(collection, customer_id)
    return order_number in orders  # already held: a redelivery of the same claim


async def release(collection: Collection, customer_id: str, order_number: str) -> int:
    """Atomically drop an order's exposure if held; returns the cents released (0 when none)."""
    _, orders = await exposure(collection, customer_id)
    amount = orders.get(order_number)
    if amount is None:
        return 0
    result = await collection.update_one(
        {"_id": _id(customer_id), f"orders.{order_number}": amount},
        {"$unset": {f"orders.{order_number}": ""}, "$inc": {"total": -amount}},
    )
    return amount if result.modified_count == 1 else 0
