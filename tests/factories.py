"""Test messages built from the sample generators, plus internal events as upstream services send them."""

import random
from datetime import UTC, datetime
from typing import Any

from orderflow import sample

NOW = datetime.now(UTC)


def submitted(ref: str = "WEB-1", **over: Any) -> dict[str, Any]:
    """A complete `order.submitted` (web channel unless overridden)."""
    base = sample.order(ref, random.Random(ref), NOW, channel=over.pop("channel", "web"), customer="C-1001")
    return {**base, **over}


def key(msg: dict[str, Any]) -> str:
    """The Kafka key of an order message."""
    return f"{msg['channel']}:{msg['channel_order_ref']}"


def customer(cid: str = "C-1001", **over: Any) -> dict[str, Any]:
    """A `customer.upserted`."""
    return {**sample.customers()[0], "customer_id": cid, **over}


def product(sku: str = "SKU-0001", **over: Any) -> dict[str, Any]:
    """A `product.upserted` for SKU-xxxx with name 'Product N'."""
    n = int(sku[-4:]) if sku.startswith("SKU-") else 0
    return {**sample.products()[0], "sku": sku, "name": f"Product {n}", "list_price": f"{10 + n}.00", **over}


def command(kind: str, ref: str = "WEB-1", cid: str = "cmd-1", **fields: Any) -> dict[str, Any]:
    """An `orders.commands` message."""
    return {
        "type": kind,
        "version": 1,
        "command_id": cid,
        "channel": "web",
        "channel_order_ref": ref,
        "issued_by": "supervisor-1",
        "issued_at": NOW.isoformat(),
        **fields,
    }
