"""The only code that touches inventory's collection: order and per-SKU stock documents."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.inventory.stock import Stock

Collection = AsyncCollection[dict[str, Any]]
STOCK = "stock:"


async def setup(collection: Collection) -> None:
    """Indexes inventory relies on."""
    await collection.create_index("state.order_number", sparse=True)


async def stock_levels(collection: Collection) -> list[dict[str, Any]]:
    """On hand and reserved per SKU and warehouse (for operators and the invariant checks)."""
    rows = []
    async for doc in collection.find({"_id": {"$regex": f"^{STOCK}"}}):
        st = Stock.from_doc(doc["_id"][len(STOCK) :], doc.get("state"))
        for wh, on_hand in sorted(st.on_hand.items()):
            rows.append({"sku": st.sku, "warehouse": wh, "on_hand": on_hand, "reserved": st.reserved(wh)})
    return rows
