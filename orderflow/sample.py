"""Sample master data, stock and orders from every channel, for the demo, tests and benchmarks."""

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts.public import CHANNELS

WAREHOUSES = ("WH-EAST", "WH-WEST")
KEYED = {"email", "fax", "phone", "sales_rep"}


def customers(n: int = 20) -> list[dict[str, Any]]:
    """Active customers (credit and prepaid, one VIP) plus one blocked customer C-9999."""
    out = []
    for i in range(n):
        credit = i % 2 == 0
        out.append(
            {
                "type": "customer.upserted",
                "version": 1,
                "customer_id": f"C-{1001 + i}",
                "name": f"Customer {i}",
                "status": "active",
                "tier": "vip" if i == 1 else "standard",
                "payment_terms": "credit" if credit else "prepaid",
                "credit_limit": "1000000.00" if credit else "0.00",
                "outstanding_balance": "1000.00" if credit else "0.00",
                "currency": "CNY",
                "allowed_payment_methods": ["credit_terms", "bank_transfer"]
                if credit
                else ["prepaid", "bank_transfer", "cash_on_delivery"],
                "contract_prices": {"LED-A60-9W": "6.50"} if i == 2 else {},
                "max_discount_pct": 10,
            }
        )
    out.append({**out[0], "customer_id": "C-9999", "status": "blocked"})
    return out


def products(n: int = 10) -> list[dict[str, Any]]:
    """Products with specs and list prices; SIGN-CUSTOM is made to order; LAMP-RARE is scarce."""
    out = [
        {
            "type": "product.upserted",
            "version": 1,
            "sku": f"SKU-{i:04d}",
            "name": f"Product {i}",
            "specs": ["STD", "PRO"],
            "uom": "EA",
            "list_price": f"{10 + i}.00",
            "currency": "CNY",
            "status": "active",
            "make_to_order": False,
            "production_lead_days": 0,
            "substitutes": [f"SKU-{(i + 1) % n:04d}"],
            "packaging_options": {"export_carton": "0.20"},
        }
        for i in range(n)
    ]
    out.append(
        {
            **out[0],
            "sku": "LED-A60-9W",
            "name": "LED bulb A60 9W",
            "specs": ["E27/3000K", "E27/6500K"],
            "list_price": "6.80",
            "substitutes": [],
        }
    )
    out.append(
        {
            **out[0],
            "sku": "SIGN-CUSTOM",
            "name": "Custom sign",
            "specs": ["A1"],
            "list_price": "120.00",
            "make_to_order": True,
            "production_lead_days": 3,
            "substitutes": [],
        }
    )
    out.append(
        {
            **out[0],
            "sku": "LAMP-RARE",
            "name": "Rare lamp",
            "specs": ["STD"],
            "list_price": "50.00",
            "substitutes": ["SKU-0001"],
        }
    )
    return out


def stock(skus: list[str], on_hand: int = 100_000) -> list[dict[str, Any]]:
    """Stock counts per SKU and warehouse; LAMP-RARE gets 5 units, SIGN-CUSTOM none."""
    out = []
    for sku in skus:
        for wh in WAREHOUSES:
            qty = (
                5
                if sku == "LAMP-RARE" and wh == WAREHOUSES[0]
                else 0
                if sku in ("LAMP-RARE", "SIGN-CUSTOM")
                else on_hand
            )
            out.append(
                {
                    "type": "stock.counted",
                    "version": 1,
                    "event_id": f"count-{sku}-{wh}",
                    "sku": sku,
                    "warehouse": wh,
                    "on_hand": qty,
                }
            )
    return out


def order(
    ref: str,
    rng: random.Random,
    now: datetime,
    *,
    channel: str | None = None,
    customer: str | None = None,
    skus: list[str] | None = None,
    lines: int | None = None,
    revision: int = 1,
    quantities: tuple[int, int] = (1, 20),
) -> dict[str, Any]:
    """A complete, consistent order (totals add up, dates real; line quantities within `quantities`)."""
    channel = channel or rng.choice(CHANNELS)
    picked = rng.sample(
        skus or [f"SKU-{i:04d}" for i in range(10)], k=min(lines or rng.randint(1, 3), len(skus or range(10)))
    )
    body_lines: list[dict[str, Any]] = []
    for n, sku in enumerate(picked, start=1):
        price = Decimal(f"{10 + int(sku[-4:]) if sku.startswith('SKU-') else 50}.00")
        body_lines.append(
            {
                "line_no": n,
                "sku": sku,
                "product_name": f"Product {int(sku[-4:])}" if sku.startswith("SKU-") else "Rare lamp",
                "spec": "STD",
                "quantity": rng.randint(*quantities),
                "uom": "EA",
                "unit_price": str(price),
            }
        )
    total = sum(Decimal(l["unit_price"]) * l["quantity"] for l in body_lines)
    return {
        "type": "order.submitted",
        "version": 1,
        "channel": channel,
        "channel_order_ref": ref,
        "revision": revision,
        "submitted_at": now.isoformat(),
        "entered_by": "clerk-7" if channel in KEYED else None,
        "customer": {
            "customer_id": customer or f"C-{1001 + rng.randrange(20)}",
            "name": "Buyer Co.",
            "contact_name": "Li Wei",
            "phone": "+86 571 5550 1234",
            "email": "buyer@example.com",
        },
        "ship_to": {
            "recipient": "Li Wei",
            "line1": "88 Wensan Rd",
            "line2": None,
            "city": "Hangzhou",
            "region": "Zhejiang",
            "postal_code": "310012",
            "country": "CN",
        },
        "lines": body_lines,
        "currency": "CNY",
        "total_amount": f"{total:.2f}",
        "payment_method": "bank_transfer",
        "requested_date": (now + timedelta(days=10)).date().isoformat(),
        "priority": "normal",
        "special_requirements": {"packaging": None, "notes": None},
        "customer_confirmation_ref": None,
    }


def incomplete(base: dict[str, Any]) -> dict[str, Any]:
    """The same order with the city missing and a wrong total: to clarify, not to force in."""
    return {**base, "ship_to": {**base["ship_to"], "city": ""}, "total_amount": "0.01"}


def demo_orders(n: int, now: datetime, seed: int = 7) -> list[tuple[dict[str, Any], str]]:
    """A demo stream with the status each order should reach (complete, incomplete, rejected, short)."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, Any], str]] = []
    for i in range(n):
        ref = f"DEMO-{now:%H%M%S}-{i:05d}"
        base = order(ref, rng, now)
        kind = i % 20
        if kind == 3:
            out.append((incomplete(base), "needs_clarification"))
        elif kind == 7:
            out.append(({**base, "customer": {**base["customer"], "customer_id": "C-9999"}}, "rejected"))
        elif kind == 11:
            out.append(
                # more than the 5 in stock: each waits for the customer's decision, the 5 stay free to ship part
                (order(ref, rng, now, skus=["LAMP-RARE"], lines=1, quantities=(6, 20)), "awaiting_customer_decision")
            )
        else:
            out.append((base, "delivered"))
    return out
