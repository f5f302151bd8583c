"""Fulfillment end to end: 200 orders through delivery with the warehouse/carrier simulator (5% delivery
exceptions), 20 of them cancelled at random stages; stock conservation, one invoice per delivered order, and
the order timeline behind `orderflow track`."""

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import topics
from orderflow import bus, demo, sample, track
from orderflow.simulator import Simulator
from services.inventory.store import held_by_order, stock_levels
from tests.e2e.checks import statuses_until, transitions

pytestmark = pytest.mark.e2e

ORDERS, EARLY, AT_RECEIPT, AFTER_OPENED, AFTER_DISPATCH = 200, 3, 4, 7, 6
ISSUER = "cs-e2e"


def _key(o: dict[str, Any]) -> str:
    return f"{o['channel']}:{o['channel_order_ref']}"


def _cancel(key: str) -> tuple[str, dict[str, Any]]:
    channel, ref = key.split(":", 1)
    cmd = {
        "type": "order.cancel",
        "version": 1,
        "command_id": f"cancel-{key}",
        "channel": channel,
        "channel_order_ref": ref,
        "issued_by": ISSUER,
        "issued_at": datetime.now(UTC).isoformat(),
        "reason": "customer changed their mind",
    }
    return key, cmd


def _refused(m: dict[str, Any]) -> bool:
    return (m.get("details") or {}).get("refused") == "order.cancel" and any(
        r["code"] == "already_shipped" for r in m.get("reasons", [])
    )


class Canceller:
    """Sends each victim's `order.cancel` once, when its order reaches the chosen stage."""

    def __init__(self, bootstrap: str, producer: AIOKafkaProducer, stages: dict[str, str]) -> None:
        self.bootstrap, self.producer, self.stages = bootstrap, producer, stages
        self.sent: dict[str, float] = {}
        self.done = asyncio.Event()

    async def send(self, key: str) -> None:
        if key not in self.sent:
            self.sent[key] = time.monotonic()
            await bus.publish(self.producer, topics.ORDERS_COMMANDS, [_cancel(key)])

    async def follow(self, topic: str, start: dict[int, int]) -> None:
        async for msg in bus.follow(self.bootstrap, topic, start, idle=0.5):
            if self.done.is_set():
                return
            if topic == topics.ORDERS_STATUS:
                key, stage = msg.get("_key"), msg.get("status")
                if stage == "shipped" and (msg.get("details") or {}).get("refused"):
                    continue
            else:  # fulfillment.shipments
                key = f"{msg.get('channel')}:{msg.get('channel_order_ref')}"
                stage = msg.get("type")
            if key in self.stages and self.stages[key] == stage:
                await self.send(key)


async def test_200_orders_are_delivered_or_cancelled_with_stock_invoices_and_timelines(
    system: dict[str, str],
) -> None:
    started = time.monotonic()
    bootstrap, database = system["KAFKA_BOOTSTRAP_SERVERS"], system["MONGODB_DATABASE"]
    tag = uuid.uuid4().hex[:6]
    rng, now = random.Random(tag), datetime.now(UTC)
    orders = [sample.order(f"FE-{tag}-{i:04d}", rng, now) for i in range(ORDERS)]
    keys = [_key(o) for o in orders]
    victims = rng.sample(keys, EARLY + AT_RECEIPT + AFTER_OPENED + AFTER_DISPATCH)
    early = victims[:EARLY]  # cancelled as soon as submitted: before review and reservation
    at_receipt = victims[EARLY : EARLY + AT_RECEIPT]  # on `received`
    after_opened = victims[EARLY + AT_RECEIPT : EARLY + AT_RECEIPT + AFTER_OPENED]  # on `shipment.opened`
    after_dispatch = victims[EARLY + AT_RECEIPT + AFTER_OPENED :]  # on `shipped`: refused (already_shipped)
    stages = {
        **dict.fromkeys(at_receipt, "received"),
        **dict.fromkeys(after_opened, "shipment.opened"),
        **dict.fromkeys(after_dispatch, "shipped"),
    }

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system["MONGODB_URI"], tz_aware=True)
    inventory = client[f"{database}_inventory"]["inventory"]
    try:
        # ---- the starting point: offsets, and stock once inventory is idle ----
        assert await demo.wait_drained(bootstrap, print, 60, groups=("inventory", "fulfillment"))
        start = {
            t: await bus.end_offsets(bootstrap, t)
            for t in (
                topics.ORDERS_STATUS,
                topics.FULFILLMENT_SHIPMENTS,
                topics.FULFILLMENT_DISPATCHED,
                topics.FINANCE_INVOICE_REQUESTS,
            )
        }
        initial = {(r["sku"], r["warehouse"]): r["on_hand"] for r in await stock_levels(inventory)}
        assert initial, "no stock counted"

        # ---- the run: simulator, cancellations, orders ----
        stop = asyncio.Event()
        sim = Simulator(bootstrap, exception_rate=0.05, delay=(0.01, 0.05))
        await sim.skip_backlog()  # older runs' shipments carry order numbers this fresh database hands out again
        sim_task = asyncio.create_task(sim.run(stop))
        async with bus.producer(bootstrap) as producer:
            canceller = Canceller(bootstrap, producer, stages)
            followers = [
                asyncio.create_task(canceller.follow(topics.ORDERS_STATUS, start[topics.ORDERS_STATUS])),
                asyncio.create_task(
                    canceller.follow(topics.FULFILLMENT_SHIPMENTS, start[topics.FULFILLMENT_SHIPMENTS])
                ),
            ]
            await bus.publish(producer, topics.ORDERS_SUBMITTED, [(_key(o), o) for o in orders])
            for key in early:
                await canceller.send(key)
            expected: dict[str, tuple[str, ...]] = {k: ("delivered",) for k in keys}
            expected |= {k: ("cancelled",) for k in early + at_receipt}
            expected |= {k: ("cancelled", "delivered") for k in after_opened + after_dispatch}
            seen = await statuses_until(bootstrap, start[topics.ORDERS_STATUS], expected, timeout=120)
            # a refusal can come after the delivery it lost the race to: wait for every victim's answer
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                answered = {k for k in after_opened + after_dispatch if any(_refused(m) for m in seen.get(k, []))} | {
                    k for k in victims if any(m["status"] == "cancelled" for m in seen.get(k, []))
                }
                if answered >= set(victims):
                    break
                await asyncio.sleep(1)
                seen = await statuses_until(bootstrap, start[topics.ORDERS_STATUS], expected, timeout=5)
            canceller.done.set()
            await asyncio.gather(*followers)
        stop.set()
        await sim_task
        print(f"\n{ORDERS} orders settled in {time.monotonic() - started:.1f}s; simulator: {sim.counts}")
        assert await demo.wait_drained(bootstrap, print, 60, groups=("inventory", "fulfillment"))
        seen = await statuses_until(bootstrap, start[topics.ORDERS_STATUS], expected, timeout=5)

        # ---- every order: delivered, cancelled, or refused-then-delivered; each transition once ----
        names = {k: [m["status"] for m in seen.get(k, [])] for k in keys}
        not_done = {k: v for k, v in names.items() if not set(expected[k]) & set(v)}
        assert not not_done, f"{len(not_done)} orders did not finish, e.g. {list(not_done.items())[:3]}"
        for key in keys:
            msgs = seen[key]
            dup = {t: ids for t, ids in transitions(msgs).items() if len(ids) > 1 and t[1] != "shipped"}
            assert not dup, f"{key}: a transition published under several event ids: {dup}"
            refusals = [m for m in msgs if _refused(m)]
            if "cancelled" in names[key]:  # a late step of a racing service is followed by `cancelled` again
                assert [m["status"] for m in msgs if not _refused(m)][-1] == "cancelled", names[key]
            if key not in victims:
                assert "cancelled" not in names[key] and not refusals and names[key][-1] == "delivered", names[key]
            elif key in early + at_receipt:
                assert "cancelled" in names[key] and not {"shipped", "delivered"} & set(names[key]), names[key]
                cancel_msg = next(m for m in msgs if m["status"] == "cancelled")
                assert cancel_msg["decided_by"] == ISSUER
            elif "cancelled" in names[key]:  # after opened (before dispatch), or a shipment back in exception
                assert "delivered" not in names[key] and not refusals, names[key]
                before = names[key][: names[key].index("cancelled")]
                assert "shipped" not in before or "delivery_exception" in before, names[key]
            else:  # refused: already shipped, then delivered
                assert len(refusals) == 1 and "delivered" in names[key], names[key]
        refused_after_dispatch = [k for k in after_dispatch if any(_refused(m) for m in seen[k])]
        assert refused_after_dispatch, "no cancellation after dispatch was refused"
        for key in after_dispatch:
            if key not in refused_after_dispatch:  # accepted only because its shipment came back in exception
                assert "delivery_exception" in names[key], names[key]
        assert set(canceller.sent) == set(victims)
        print(
            f"cancelled: {len(early)} on submission, {len(at_receipt)} on receipt, "
            f"{sum('cancelled' in names[k] for k in after_opened)}/{len(after_opened)} after shipment.opened "
            f"(the rest lost the race to the dispatch: refused); after dispatch {len(refused_after_dispatch)}/"
            f"{len(after_dispatch)} refused (the rest: cancelled while back in delivery exception)"
        )
        delivered = {k for k in keys if "delivered" in names[k]}
        cancelled = {k for k in keys if "cancelled" in names[k]}
        assert len(delivered) + len(cancelled) == ORDERS and not delivered & cancelled
        assert len(delivered) >= ORDERS - len(victims) + len(refused_after_dispatch)
        # the number comes with `received` (an early cancellation's own status may come before it, without one)
        number = {
            k: n for k in keys for n in [next((m["order_number"] for m in seen[k] if m["order_number"]), None)] if n
        }
        assert set(keys) - set(early) <= set(number)

        # ---- exactly one invoice per delivered order, none for a cancelled one ----
        invoices = Counter(
            m["order_number"]
            for m in await bus.read(bootstrap, topics.FINANCE_INVOICE_REQUESTS, start[topics.FINANCE_INVOICE_REQUESTS])
        )
        assert all(invoices[number[k]] == 1 for k in delivered), {k: invoices[number[k]] for k in delivered}
        assert not any(invoices[number[k]] for k in cancelled if k in number)

        # ---- stock conservation: on hand = initial - what was shipped; nothing left reserved ----
        shipped_msgs = await bus.read(bootstrap, topics.FULFILLMENT_DISPATCHED, start[topics.FULFILLMENT_DISPATCHED])
        assert len({m["shipment_id"] for m in shipped_msgs}) == len(shipped_msgs), "a shipment consumed twice"
        shipped: Counter[tuple[str, str]] = Counter()
        for m in shipped_msgs:
            for line in m["lines"]:
                shipped[(line["sku"], m["warehouse"])] += line["quantity"]
        final = {(r["sku"], r["warehouse"]): r for r in await stock_levels(inventory)}
        for where, on_hand in initial.items():
            assert final[where]["on_hand"] == on_hand - shipped[where], (where, on_hand, shipped[where], final[where])
        opened = {
            m["shipment_id"]: m
            for m in await bus.read(bootstrap, topics.FULFILLMENT_SHIPMENTS, start[topics.FULFILLMENT_SHIPMENTS])
            if m.get("type") == "shipment.opened"
        }
        mine = {number[k] for k in keys if k in number}
        by_order: dict[str, Counter[str]] = defaultdict(Counter)
        for m in shipped_msgs:
            if m["order_number"] in mine:
                assert [(l["sku"], l["quantity"]) for l in m["lines"]] == [
                    (l["sku"], l["quantity"]) for l in opened[m["shipment_id"]]["lines"]
                ]
                for line in m["lines"]:
                    by_order[m["order_number"]][line["sku"]] += line["quantity"]
        ordered = {_key(o): Counter({l["sku"]: l["quantity"] for l in o["lines"]}) for o in orders}
        for k in delivered:
            assert by_order[number[k]] == ordered[k], (k, by_order[number[k]], ordered[k])
        for k in cancelled:
            if k in number and not any(m["status"] == "delivery_exception" for m in seen[k]):
                assert not by_order[number[k]], f"{k} was cancelled before dispatch but its stock left"
        held = [n for n, units in (await held_by_order(inventory)).items() if n in mine and any(units.values())]
        assert not held, f"reservations left behind: {held[:5]}"

        # ---- the timeline: every status of every order, by key or by order number (orderflow track) ----
        for key in keys:
            tl = await track.fetch(key, system["MONGODB_URI"], database)
            assert tl is not None, key
            assert [e["event_id"] for e in tl["entries"]] == list(dict.fromkeys(m["event_id"] for m in seen[key])), key
            assert all(e["decided_by"] for e in tl["entries"]), key
        key = next(k for k in keys if k in refused_after_dispatch) if refused_after_dispatch else sorted(delivered)[0]
        tl = await track.fetch(number[key], system["MONGODB_URI"], database)
        assert tl is not None and tl["order_key"] == key and tl["order_number"] == number[key]
        steps = [e["status"] for e in tl["entries"]]
        assert steps[:3] == ["received", "approved", "reserved"] and steps[-1] == "delivered", steps
        refusal = next(e for e in tl["entries"] if e["reasons"] and e["reasons"][0]["code"] == "already_shipped")
        assert refusal["decided_by"] == ISSUER
        text = track.render(tl)
        print(text)
        for word in (number[key], "received", "approved", "reserved", "shipped", "delivered", "already_shipped"):
            assert word in text, word
        assert time.monotonic() - started < 180
    finally:
        await client.close()
