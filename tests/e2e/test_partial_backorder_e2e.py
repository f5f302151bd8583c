"""A partial shipment whose remainder is backordered, end to end through the public topics: the part ships
now, the rest when goods arrive, one delivery and one invoice for the whole order."""

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import topics
from orderflow import bus, commands, demo, sample
from orderflow.simulator import Simulator
from tests.e2e.checks import statuses_until

pytestmark = pytest.mark.e2e


async def test_ship_the_part_now_and_the_backordered_rest_when_it_arrives(system: dict[str, str]) -> None:
    bootstrap = system["KAFKA_BOOTSTRAP_SERVERS"]
    tag, now = uuid.uuid4().hex[:6], datetime.now(UTC)
    sku = f"PART-{tag}"
    rare = next(p for p in sample.products() if p["sku"] == "LAMP-RARE")
    counted = {"type": "stock.counted", "version": 1, "event_id": f"count-{sku}", "sku": sku,
               "warehouse": "WH-EAST", "on_hand": 6}  # fmt: skip
    async with bus.producer(bootstrap) as p:
        await bus.publish(p, topics.MASTERDATA_PRODUCTS, [(sku, {**rare, "sku": sku, "substitutes": []})])
        await bus.publish(p, topics.INVENTORY_MOVEMENTS, [(sku, counted)])
    assert await demo.wait_drained(bootstrap, print, 60, groups=("review", "inventory"))

    o = sample.order(f"PB-{tag}", random.Random(tag), now, customer="C-1001", skus=[sku], lines=1)
    line = {**o["lines"][0], "quantity": 10}
    order = {**o, "lines": [line], "total_amount": str(round(float(line["unit_price"]) * 10, 2))}
    key = f"{order['channel']}:{order['channel_order_ref']}"
    start = await bus.end_offsets(bootstrap, topics.ORDERS_STATUS)
    invoices_from = await bus.end_offsets(bootstrap, topics.FINANCE_INVOICE_REQUESTS)
    stop = asyncio.Event()
    sim = Simulator(bootstrap, exception_rate=0.0, delay=(0.01, 0.05))
    await sim.skip_backlog()
    sim_task = asyncio.create_task(sim.run(stop))
    try:
        async with bus.producer(bootstrap) as p:
            await bus.publish(p, topics.ORDERS_SUBMITTED, [(key, order)])
            asked = await statuses_until(bootstrap, start, {key: "awaiting_customer_decision"}, timeout=60)
            # customer service answers through `orderflow order shortage <order number> ship_partial --remainder
            # backorder`: the order found by its number, the command checked against the contract, the answer shown
            number = next(m["order_number"] for m in asked[key] if m["order_number"])
            assert await commands.order_key(number) == key
            with pytest.raises(commands.CommandError, match="remainder"):
                commands.build("order.shortage-decision", key, "cs-e2e", choice="ship_partial", remainder="later")
            decision = commands.build(
                "order.shortage-decision", key, "cs-e2e", choice="ship_partial", remainder="backorder"
            )
            answer = await commands.send(bootstrap, decision, wait=30)
            assert answer is not None and answer["status"] == "backordered", commands.describe(answer)
            seen = await statuses_until(bootstrap, start, {key: "partially_shipped"}, timeout=60)
            received = {"type": "stock.received", "version": 1, "event_id": f"rcv-{sku}", "sku": sku,
                        "warehouse": "WH-WEST", "quantity": 4, "po_number": None}  # fmt: skip
            await bus.publish(p, topics.INVENTORY_MOVEMENTS, [(sku, received)])
            seen = await statuses_until(bootstrap, start, {key: "delivered"}, timeout=60)
    finally:
        stop.set()
        await sim_task

    unique = list({m["event_id"]: m for m in seen[key]}.values())
    names = [m["status"] for m in unique]
    assert names == [
        "received", "approved", "awaiting_customer_decision", "backordered", "partially_shipped", "shipped",
        "delivered",
    ], names  # fmt: skip
    backordered = unique[3]
    assert backordered["details"]["more_to_come"] is True
    assert backordered["details"]["allocations"] == [
        {"warehouse": "WH-EAST", "lines": [{"line_no": 1, "sku": sku, "quantity": 6}]}
    ]
    assert unique[-2]["details"]["lines"] == [{"line_no": 1, "sku": sku, "quantity": 4}]  # the rest shipped
    await asyncio.sleep(1.0)
    invoices: list[dict[str, Any]] = [
        m for m in await bus.read(bootstrap, topics.FINANCE_INVOICE_REQUESTS, invoices_from)
        if m["order_number"] == number
    ]  # fmt: skip
    assert len({m["event_id"] for m in invoices}) == 1, invoices
    assert [(l["sku"], l["quantity"]) for l in invoices[0]["lines"]] == [(sku, 10)]
