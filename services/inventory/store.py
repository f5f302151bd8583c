"""Inventory's documents: typed order and stock states, and the repository that alone knows their keys.

Two kinds of document live in inventory's collection: `order:<order key>` (an order's inventory state,
`OrderState`) and `stock:<sku>` (one SKU across warehouses, `Stock`). Their document form is unchanged
from the untyped days, so documents written before and after read alike.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypedDict, TypeVar, cast

from pymongo.asynchronous.collection import AsyncCollection

from contracts.internal import OrderApproved
from services.inventory.stock import Stock
from services.runtime.batch import Batch
from services.runtime.messages import Outgoing
from services.runtime.outbox import DocStore, Store
from services.runtime.steps import Decision, Kind, Loaded, load, save

Collection = AsyncCollection[dict[str, Any]]
ORDER = "order:"
STOCK = "stock:"
WRITE_FIRST = (STOCK,)  # stock documents are written before the order documents that rely on them
T = TypeVar("T")


@dataclass(frozen=True)
class LinePlan:
    """How one order line is served: its SKU (a substitute's, once chosen), quantity and state."""

    sku: str
    qty: int
    state: str  # reserved | backordered | in_production | awaiting_priority_approval | pending


@dataclass(frozen=True)
class Take:
    """One reservation a priority order asks to take from a normal order."""

    order_key: str
    order_number: str
    line_no: int
    sku: str
    quantity: int

    def public(self) -> dict[str, Any]:
        """What the status asking for approval lists (no order key)."""
        return {"order_number": self.order_number, "line_no": self.line_no, "sku": self.sku, "quantity": self.quantity}


class WaitOption(TypedDict):
    """The `wait` option: the date purchase orders in transit could cover the shortage by, if any."""

    promise_date: str | None


class Options(TypedDict):
    """The shortage options offered to the customer, as its status lists them (`details.options`)."""

    ship_partial: dict[str, int]  # line -> units that would ship now
    remainder: list[str]  # with ship_partial: what may happen to the rest
    wait: WaitOption
    substitute: dict[str, list[str]]  # line -> SKUs in stock that may replace it
    cancel: bool


@dataclass(frozen=True)
class OrderState:
    """An order's inventory state. `approved` is the revision being served (absent once cancelled by the
    customer's choice); `sent` is what was handed to fulfillment ahead of a backordered remainder and is not
    yet shipped (line -> warehouse -> units); `dispatched` lists its shipments that left."""

    status: str
    revision: int
    order_number: str | None = None
    approved: OrderApproved | None = None
    lines: Mapping[str, LinePlan] = field(default_factory=dict)
    promise_date: date | None = None
    options: Options | None = None  # the shortage options offered, as sent on the status
    reallocation: tuple[Take, ...] = ()
    dispatched: tuple[str, ...] = ()
    sent: Mapping[str, Mapping[str, int]] | None = None

    def skus(self) -> set[str]:
        """Every SKU the order may touch: its lines, their substitutes, what it planned."""
        if self.approved is None:
            return set()
        lines = self.approved.lines
        return {l.sku for l in lines} | {s for l in lines for s in l.substitutes} | {p.sku for p in self.lines.values()}

    def to_doc(self) -> dict[str, Any]:
        """Document form (optional parts only when present)."""
        doc: dict[str, Any] = {"order_number": self.order_number, "revision": self.revision, "status": self.status}
        if self.approved is not None:
            doc["approved"] = self.approved.model_dump(mode="json")
        doc["lines"] = {k: {"sku": p.sku, "qty": p.qty, "state": p.state} for k, p in self.lines.items()}
        if self.promise_date is not None:
            doc["promise_date"] = self.promise_date.isoformat()
        if self.options is not None:
            doc["options"] = self.options
        if self.reallocation:
            doc["reallocation"] = [{"order_key": t.order_key, **t.public()} for t in self.reallocation]
        if self.dispatched:
            doc["dispatched"] = list(self.dispatched)
        if self.sent is not None:
            doc["sent"] = {k: dict(v) for k, v in self.sent.items()}
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> "OrderState | None":
        """Rebuild from document form; None for an order inventory has no state of."""
        if not doc:
            return None
        promise = doc.get("promise_date")
        return cls(
            status=doc.get("status", "approved"),
            revision=doc.get("revision", 0),
            order_number=doc.get("order_number"),
            approved=OrderApproved.model_validate(doc["approved"]) if "approved" in doc else None,
            lines={k: LinePlan(v["sku"], v["qty"], v["state"]) for k, v in doc.get("lines", {}).items()},
            promise_date=date.fromisoformat(promise) if promise else None,
            options=cast(Options, doc["options"]) if "options" in doc else None,
            reallocation=tuple(Take(**t) for t in doc.get("reallocation", [])),
            dispatched=tuple(doc.get("dispatched", [])),
            sent={k: dict(v) for k, v in doc["sent"].items()} if "sent" in doc else None,
        )


@dataclass(frozen=True)
class View:
    """What a decision reads: order states by order key (None: unknown to inventory) and stocks by SKU."""

    orders: Mapping[str, OrderState | None] = field(default_factory=dict)
    stocks: Mapping[str, Stock] = field(default_factory=dict)


def _read_stock(doc: dict[str, Any]) -> Stock:
    return Stock.from_doc(doc["sku"], doc)


def _read_order(doc: dict[str, Any]) -> OrderState:
    state = OrderState.from_doc(doc)
    if state is None:
        raise ValueError("an order document with an empty state")
    return state


ORDERS: Kind[OrderState] = Kind(ORDER, _read_order, OrderState.to_doc)
STOCKS: Kind[Stock] = Kind(STOCK, _read_stock, Stock.to_doc)


def message_docs(order_keys: Iterable[str] = (), skus: Iterable[str] = ()) -> list[str]:
    """The document keys a message names, for the batch to prefetch together."""
    return [*map(ORDERS.key, order_keys), *map(STOCKS.key, sorted(set(skus)))]


class Repository:
    """Inventory's documents within one batch: loaded once (typed), recorded with the input that changed them."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.loaded: dict[str, Loaded[Any]] = {}

    async def _load(self, kind: Kind[T], idents: Iterable[str]) -> dict[str, Loaded[T]]:
        wanted = list(dict.fromkeys(idents))
        await self.batch.prefetch(kind.key(i) for i in wanted)
        out: dict[str, Loaded[T]] = {}
        for ident in wanted:
            out[ident] = self.loaded[kind.key(ident)] = await load(self.batch, kind, ident)
        return out

    async def seen(self, cause: str, order_keys: Iterable[str] = (), skus: Iterable[str] = ()) -> bool:
        """Whether every named document already applied `cause` (at least one must be named)."""
        orders, stocks = await self._load(ORDERS, order_keys), await self._load(STOCKS, skus)
        named = [d.doc for d in orders.values()] + [d.doc for d in stocks.values()]
        return bool(named) and all(d.seen(cause) for d in named)

    async def orders(self, keys: Iterable[str]) -> dict[str, OrderState | None]:
        """Order states by order key (None where inventory knows no such order)."""
        return {k: d.state for k, d in (await self._load(ORDERS, keys)).items()}

    async def stocks(self, skus: Iterable[str]) -> dict[str, Stock]:
        """Stocks by SKU (an unknown SKU has none)."""
        loaded = await self._load(STOCKS, sorted(set(skus)))
        return {s: Stock(s) if d.state is None else d.state for s, d in loaded.items()}

    async def view(self, order_keys: Iterable[str] = (), skus: Iterable[str] = ()) -> View:
        """The orders and stocks named, plus the stocks every named order may touch."""
        orders = await self.orders(order_keys)
        more = set(skus).union(*(s.skus() for s in orders.values() if s is not None))
        return View(orders, await self.stocks(more))

    def record(
        self,
        cause: str,
        orders: Mapping[str, OrderState | None],
        events: Mapping[str, Sequence[Outgoing]],
        stocks: Mapping[str, Stock],
        stock_input: bool,
    ) -> None:
        """Record new states: each order listed (unless None) remembers `cause` with its events (one that has
        already applied it is left as it is); a stock is rewritten only if changed (or new), remembering `cause`
        only for an input about stock (`stock_input`: otherwise the order documents remember it)."""
        for sku, st in stocks.items():
            loaded = self.loaded[STOCKS.key(sku)]
            if loaded.state is None or st != loaded.state:
                save(self.batch, loaded, cause if stock_input else None, Decision(st))
        for key, new in orders.items():
            loaded = self.loaded[ORDERS.key(key)]
            if new is not None and not loaded.seen(cause):
                save(self.batch, loaded, cause, Decision(new, events.get(key, ())))


async def setup(collection: Collection) -> None:
    """Indexes inventory relies on."""
    await collection.create_index("state.order_number", sparse=True)


async def stock_levels(source: Store | Collection) -> list[dict[str, Any]]:
    """On hand and reserved per SKU and warehouse (for operators and the invariant checks), from a store or
    straight from inventory's collection."""
    docs = source if isinstance(source, Store) else DocStore(source)
    rows = []
    for key, state in sorted((await docs.scan(STOCK)).items()):
        st = Stock.from_doc(key.removeprefix(STOCK), state)
        for wh, on_hand in sorted(st.on_hand.items()):
            rows.append({"sku": st.sku, "warehouse": wh, "on_hand": on_hand, "reserved": st.reserved(wh)})
    return rows
