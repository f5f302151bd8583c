"""Inventory's subscriber logic: parse -> load -> decide -> record (the batch writes and publishes)."""

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from contracts.internal import OrderApproved, OrderCancelled, StockShipped
from contracts.public import (
    PriorityApproval,
    ProductionUpdated,
    PurchaseOrderUpdated,
    ShortageDecision,
    StockCounted,
    StockReceived,
)
from services.inventory import domain
from services.inventory.stock import PurchaseOrder, Stock
from services.runtime.batch import Batch, Handler
from services.runtime.messages import Incoming
from services.runtime.outbox import Doc, record
from services.runtime.status import order_key


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, OrderApproved):
        skus = {l.sku for l in msg.lines} | {s for l in msg.lines for s in l.substitutes}
        return [f"order:{msg.order_key}", *(f"stock:{s}" for s in sorted(skus))]
    if isinstance(msg, OrderCancelled):
        return [f"order:{msg.order_key}"]
    if isinstance(msg, ShortageDecision | PriorityApproval):
        return [f"order:{order_key(msg.channel, msg.channel_order_ref)}"]
    if isinstance(msg, StockShipped):
        return [f"order:{msg.order_key}", *(f"stock:{l.sku}" for l in msg.lines)]
    if isinstance(msg, StockCounted | StockReceived | PurchaseOrderUpdated | ProductionUpdated):
        return [f"stock:{msg.sku}"]
    return []


async def _stocks(batch: Batch, skus: Iterable[str]) -> tuple[dict[str, Doc], dict[str, Stock]]:
    docs = {s: await batch.doc(f"stock:{s}") for s in sorted(set(skus))}
    return docs, {s: Stock.from_doc(s, d.state) for s, d in docs.items()}


def _save(docs: dict[str, Doc], stocks: dict[str, Stock], cause: str | None) -> None:
    """Record the changed stock documents; `cause` None when the order document remembers the input."""
    for sku, doc in docs.items():
        state = stocks[sku].to_doc()
        if state != doc.state or not doc.state:  # an unchanged stock document (e.g. a substitute) is not rewritten
            record(doc, cause, state, [])


def _skus(order: OrderApproved) -> set[str]:
    return {l.sku for l in order.lines} | {s for l in order.lines for s in l.substitutes}


def handlers(prefs: tuple[str, ...]) -> dict[type[BaseModel], Handler]:
    """Inventory's handlers with the warehouse preference order."""

    async def on_approved(batch: Batch, msg: OrderApproved, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{msg.order_key}")
        if doc.seen(msg.event_id):
            return "duplicate"
        state = doc.state or {}
        if state.get("status") == "cancelled":  # a batch interrupted after its stock write may have reserved
            record(doc, msg.event_id, doc.state, [])
            leftover, _ = await _release(batch, msg, {"approved": msg.model_dump(mode="json")}, msg.event_id)
            return f"ignored: cancelled ({leftover} units left by an interrupted batch released)"
        if msg.revision < state.get("revision", 0):
            record(doc, msg.event_id, doc.state, [])
            return "ignored: older revision"
        skus = _skus(msg) | domain.skus_of(doc.state)
        docs, stocks = await _stocks(batch, skus)
        released = domain.release_all(doc.state, stocks)  # an amended revision is planned afresh
        result = domain.allocate(msg.event_id, msg, stocks, prefs, batch.now)
        if result.state is not None and state.get("dispatched"):
            result.state["dispatched"] = state["dispatched"]  # a shipped order never loses stock to a priority
        if state.get("status") == "reserved" or state.get("sent"):  # fulfillment holds shipments of the old plan
            old = OrderApproved.model_validate(state["approved"])
            why = f"order amended to revision {msg.revision}"
            result.outputs.insert(0, domain.revoked(msg.event_id, old, why))
        record(doc, msg.event_id, result.state, result.outputs)
        if released:
            await _refill(batch, docs, stocks, msg.event_id)
        _save(docs, stocks, None)
        return f"{result.outcome} {msg.order_number}"

    async def on_cancelled(batch: Batch, msg: OrderCancelled, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{msg.order_key}")
        if doc.seen(msg.event_id):
            return "duplicate"
        if doc.state and "approved" in doc.state:
            held = doc.state
            record(doc, msg.event_id, domain.cancelled(held, msg), [])
            order = OrderApproved.model_validate(held["approved"])
            released, refilled = await _release(batch, order, held, msg.event_id)
            return f"cancelled: released {released} units; {refilled} waiting order(s) served"
        record(doc, msg.event_id, domain.cancelled(doc.state, msg), [])
        return "cancelled: nothing held"

    async def on_shipped(batch: Batch, msg: StockShipped, rec: Incoming) -> str:
        cause = f"shipped:{msg.shipment_id}"
        docs, stocks = await _stocks(batch, (l.sku for l in msg.lines))
        if all(d.seen(cause) for d in docs.values()):
            return "duplicate"
        number = msg.order_number or msg.order_key
        for line in msg.lines:
            stocks[line.sku].consume(domain.rid(number, line.line_no), msg.warehouse, line.quantity)
        _save(docs, stocks, cause)
        order_doc = await batch.doc(f"order:{msg.order_key}")
        if order_doc.state is not None and not order_doc.seen(cause):
            # remembered so that none of the order's stock is reallocated to a priority order any more
            dispatched = sorted({*order_doc.state.get("dispatched", []), msg.shipment_id})
            state = domain.shipped_part(order_doc.state, msg.warehouse, msg.lines)
            record(order_doc, cause, {**state, "dispatched": dispatched}, [])
        return f"consumed for {msg.shipment_id}"

    async def on_counted(batch: Batch, msg: StockCounted, rec: Incoming) -> str:
        docs, stocks = await _stocks(batch, [msg.sku])
        doc, st = docs[msg.sku], stocks[msg.sku]
        cause = msg.event_id or rec.origin
        if doc.seen(cause):
            return "duplicate"
        if msg.on_hand < st.reserved(msg.warehouse):
            batch.dead_letter(
                rec,
                f"count of {msg.on_hand} for {msg.sku}@{msg.warehouse} is below the "
                f"{st.reserved(msg.warehouse)} units reserved: resolve the reservations first",
            )
            return "refused: count below reserved"
        st.on_hand[msg.warehouse] = msg.on_hand
        await _refill(batch, docs, stocks, cause)
        _save(docs, stocks, cause)
        return f"counted {msg.sku}@{msg.warehouse}={msg.on_hand}"

    async def on_received(batch: Batch, msg: StockReceived, rec: Incoming) -> str:
        docs, stocks = await _stocks(batch, [msg.sku])
        doc, st = docs[msg.sku], stocks[msg.sku]
        cause = msg.event_id or rec.origin
        if doc.seen(cause):
            return "duplicate"
        st.on_hand[msg.warehouse] = st.on_hand.get(msg.warehouse, 0) + msg.quantity
        if msg.po_number and msg.po_number in st.incoming:
            po = st.incoming[msg.po_number]
            po.quantity = max(0, po.quantity - msg.quantity)
        filled = await _refill(batch, docs, stocks, cause)
        _save(docs, stocks, cause)
        return f"received {msg.quantity} {msg.sku}@{msg.warehouse}; {filled} waiting order(s) served"

    async def on_po(batch: Batch, msg: PurchaseOrderUpdated, rec: Incoming) -> str:
        docs, stocks = await _stocks(batch, [msg.sku])
        st = stocks[msg.sku]
        cause = msg.event_id or rec.origin
        if docs[msg.sku].seen(cause):
            return "duplicate"
        old = st.incoming.get(msg.po_number)
        st.incoming[msg.po_number] = PurchaseOrder(
            msg.warehouse, msg.quantity, msg.eta, msg.status, old.promised if old else {}
        )
        _save(docs, stocks, cause)
        return f"po {msg.po_number} {msg.status}"

    async def on_production(batch: Batch, msg: ProductionUpdated, rec: Incoming) -> str:
        docs, stocks = await _stocks(batch, [msg.sku])
        doc, st = docs[msg.sku], stocks[msg.sku]
        cause = msg.event_id or rec.origin
        if doc.seen(cause):
            return "duplicate"
        if msg.status == "done":
            wh = prefs[0] if prefs else "MAIN"
            st.on_hand[wh] = st.on_hand.get(wh, 0) + msg.quantity
            waiting = [r for r, w in st.waiting.items() if w.get("request_id") == msg.production_request_id]
            for r in waiting:
                st.waiting[r]["since"] = "0"  # the produced goods go to the order that asked for them first
            await _refill(batch, docs, stocks, cause)
        _save(docs, stocks, cause)
        return f"production {msg.production_request_id} {msg.status}"

    async def _refill(batch: Batch, docs: dict[str, Doc], stocks: dict[str, Stock], cause: str) -> int:
        """Free stock of the loaded SKUs goes to the orders waiting for it (`domain.refill`) in this batch: the
        orders' documents and any further stock they need are loaded here and written with the batch."""
        skus = sorted(s for s, st in stocks.items() if st.total_available() > 0)
        keys = domain.waiting_for([stocks[s] for s in skus])
        if not keys:
            return 0
        await batch.prefetch(f"order:{k}" for k in keys)
        order_docs = {k: await batch.doc(f"order:{k}") for k in keys}
        states = {k: d.state for k, d in order_docs.items()}
        more_docs, more = await _stocks(batch, set().union(*map(domain.skus_of, states.values())) - set(stocks))
        docs.update(more_docs)
        stocks.update(more)
        results = domain.refill(cause, skus, stocks, states, prefs, batch.now)
        for k, r in results.items():
            record(order_docs[k], cause, r.state, r.outputs)
        return len(results)

    async def _release(batch: Batch, order: OrderApproved, held: dict[str, Any], cause: str) -> tuple[int, int]:
        """Release every reservation and promise `held` (an order's inventory state) has on the order's SKUs,
        give the freed stock to waiting orders and record the stock; returns (units released, orders served)."""
        docs, stocks = await _stocks(batch, _skus(order))
        released = domain.release_all(held, stocks)
        refilled = await _refill(batch, docs, stocks, cause)
        _save(docs, stocks, None)
        return released, refilled

    async def on_shortage(batch: Batch, msg: ShortageDecision, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{order_key(msg.channel, msg.channel_order_ref)}")
        if doc.seen(msg.command_id):
            return "duplicate"
        state = doc.state or {}
        if state.get("status") != "awaiting_customer_decision":
            record(doc, msg.command_id, doc.state, [domain.refused(msg, state, batch.now)])
            return "refused: no decision awaited"
        order = OrderApproved.model_validate(state["approved"])
        skus = _skus(order) | ({msg.substitute_sku} if msg.substitute_sku else set())
        docs, stocks = await _stocks(batch, skus)
        result = domain.decide_shortage(msg, order, stocks, prefs, batch.now)
        record(doc, msg.command_id, result.state if result.state is not None else doc.state, result.outputs)
        if result.keep_stock:
            await _refill(batch, docs, stocks, msg.command_id)
            _save(docs, stocks, None)
        return f"{msg.choice}: {result.outcome}"

    async def on_priority(batch: Batch, msg: PriorityApproval, rec: Incoming) -> str:
        doc = await batch.doc(f"order:{order_key(msg.channel, msg.channel_order_ref)}")
        if doc.seen(msg.command_id):
            return "duplicate"
        state = doc.state or {}
        if state.get("status") != "awaiting_priority_approval":
            record(doc, msg.command_id, doc.state, [domain.refused(msg, state, batch.now)])
            return "refused: no priority approval awaited"
        victim_docs = {
            k: await batch.doc(f"order:{k}") for k in sorted({t["order_key"] for t in state.get("reallocation", [])})
        }
        victims = {k: d.state for k, d in victim_docs.items()}
        skus = domain.skus_of(state).union(*map(domain.skus_of, victims.values()))
        docs, stocks = await _stocks(batch, skus)
        out = domain.decide_priority(msg, state, victims, stocks, prefs, batch.now)
        record(doc, msg.command_id, out.result.state, out.result.outputs)
        for k, r in out.victims.items():
            record(victim_docs[k], msg.command_id, r.state, r.outputs)
        await _refill(batch, docs, stocks, msg.command_id)  # what a denial or the re-plans left free
        _save(docs, stocks, None)
        verdict = "approved" if msg.approved else "denied"
        return f"priority {verdict}: {out.result.outcome}; {len(out.victims)} order(s) re-planned"

    return {
        OrderApproved: on_approved,
        OrderCancelled: on_cancelled,
        StockShipped: on_shipped,
        StockCounted: on_counted,
        StockReceived: on_received,
        PurchaseOrderUpdated: on_po,
        ProductionUpdated: on_production,
        ShortageDecision: on_shortage,
        PriorityApproval: on_priority,
    }
