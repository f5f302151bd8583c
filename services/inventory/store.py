"""Inventory's documents: typed order and stock states, and the repository that alone knows their keys.

Two kinds of document live in inventory's collection: `order:<order key>` (an order's inventory state,
`OrderState`, with what it holds of each SKU) and `stock:<sku>` (one SKU across warehouses, `Stock`: counters,
purchase orders, waiting lines and the bounded `recent` holds). A stock document of the old form, with every
reservation inline, reads as counters plus `recent` holds, which move to the order documents as they are written.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TypedDict, TypeVar, cast

from pymongo.asynchronous.collection import AsyncCollection

from contracts.internal import OrderApproved
from services.inventory.stock import Deciding, Hold, Stock, empty_hold, read_hold
from services.runtime.batch import Batch
from services.runtime.messages import Outgoing
from services.runtime.outbox import Doc, DocStore, Store
from services.runtime.steps import Decision, Kind, Loaded, load, save, typed

Collection = AsyncCollection[dict[str, Any]]
ORDER = "order:"
STOCK = "stock:"
RECENT_MAX = 32  # `recent` holds a stock document keeps before the writer checks which order documents have them
SHIPPED_MAX = 32  # likewise for the shipments it consumed (`shipped`)
PAGE = "deciding:"  # `deciding:<sku>:<n>`: lines of orders awaiting a decision spilled from a stock document
CANDIDATES_MAX = 64  # orders holding movable stock a stock document lists for priority orders
DECIDING_MAX = 64  # `deciding` lines a stock document keeps; beyond it, all but the oldest DECIDING_KEEP spill
DECIDING_KEEP = 32
DECIDING_LOW = 16  # below this many lines the oldest spilled page comes back
# spilled pages are stored before the stock documents that stop listing their lines, and stock documents before
# the order documents that rely on them
WRITE_FIRST = (PAGE, STOCK)
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
    holds: Mapping[str, Hold] = field(default_factory=dict)  # sku -> what the order holds of it

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
        if self.holds:
            doc["holds"] = {s: h for s, h in sorted(self.holds.items())}
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
            holds={s: read_hold(h) for s, h in doc.get("holds", {}).items()},
        )


@dataclass(frozen=True)
class View:
    """What a decision reads: order states by order key (None: unknown to inventory) and stocks by SKU."""

    orders: Mapping[str, OrderState | None] = field(default_factory=dict)
    stocks: Mapping[str, Stock] = field(default_factory=dict)


def attach(stocks: Mapping[str, Stock], orders: Mapping[str, OrderState | None]) -> dict[str, Stock]:
    """Copies of `stocks` with what each of `orders` holds of them listed among their reservations (`Stock.attach`):
    the view a decision about those orders needs."""
    out = {}
    for sku, st in stocks.items():
        out[sku] = c = st.copy()
        for key, state in orders.items():
            c.attach(key, state.holds.get(sku) if state is not None else None)
    return out


def with_holds(state: OrderState, key: str, current: Mapping[str, Mapping[str, Hold]]) -> OrderState:
    """The order's state with what it now holds of each SKU it is attached to (`current`: sku -> order key ->
    hold, from `Stock.current_holds`); the holds of other SKUs stay as they were."""
    holds = dict(state.holds)
    for sku, now in current.items():
        if key in now:
            holds[sku] = now[key]
    holds = {s: h for s, h in holds.items() if h["r"] or h["o"]}
    return state if holds == state.holds else replace(state, holds=holds)


def _read_stock(doc: dict[str, Any]) -> Stock:
    return Stock.from_doc(doc["sku"], doc)


def _read_order(doc: dict[str, Any]) -> OrderState:
    state = OrderState.from_doc(doc)
    if state is None:
        raise ValueError("an order document with an empty state")
    return state


def _read_page(doc: dict[str, Any]) -> dict[str, Deciding]:
    return {r: cast(Deciding, dict(d)) for r, d in doc.items()}


ORDERS: Kind[OrderState] = Kind(ORDER, _read_order, OrderState.to_doc)
STOCKS: Kind[Stock] = Kind(STOCK, _read_stock, Stock.to_doc)
PAGES: Kind[dict[str, Deciding]] = Kind(PAGE, _read_page, dict)


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

    def inboxed(self, cause: str, skus: Iterable[str]) -> set[str]:
        """The SKUs (their stocks loaded) whose stock document has `cause` in its inbox."""
        return {s for s in skus if self.loaded[STOCKS.key(s)].seen(cause)}

    async def orders(self, keys: Iterable[str]) -> dict[str, OrderState | None]:
        """Order states by order key (None where inventory knows no such order)."""
        return {k: d.state for k, d in (await self._load(ORDERS, keys)).items()}

    async def stocks(self, skus: Iterable[str]) -> dict[str, Stock]:
        """Stocks by SKU as stored, no order attached (an unknown SKU has none)."""
        loaded = await self._load(STOCKS, sorted(set(skus)))
        return {s: Stock(s) if d.state is None else d.state for s, d in loaded.items()}

    async def view(self, order_keys: Iterable[str] = (), skus: Iterable[str] = ()) -> View:
        """The orders and stocks named, plus the stocks every named order may touch, with those orders attached."""
        orders = await self.orders(order_keys)
        more = set(skus).union(*(s.skus() for s in orders.values() if s is not None))
        return View(orders, attach(await self.stocks(more), orders))

    async def holders(self, skus: Iterable[str]) -> list[str]:
        """The orders a priority order may take stock of `skus` from: each stock's `candidates` (at most
        CANDIDATES_MAX orders holding it movably) and the orders its `recent` holds name."""
        stocks = (await self.stocks(skus)).values()
        return sorted({k for st in stocks for k in st.candidates} | {k for st in stocks for k in st.recent})

    async def record(
        self,
        cause: str,
        orders: Mapping[str, OrderState | None],
        events: Mapping[str, Sequence[Outgoing]],
        stocks: Mapping[str, Stock],
        stock_input: bool,
    ) -> None:
        """Record new states: each order listed (unless None) remembers `cause` with its events and what it now
        holds (one that has already applied it is left as it is); a stock is rewritten only if changed (or new),
        remembering `cause` only for an input about stock (`stock_input`: otherwise the order documents remember
        it). A stock is written before the orders (`WRITE_FIRST`) with the holds it changed in `recent`, so a
        batch interrupted between the two writes finds them when replayed; `recent` is kept short by `_settled`."""
        current = {sku: st.current_holds() for sku, st in stocks.items()}
        moved = {k for sku, st in stocks.items() for k in st.changed_holds()}
        if stray := moved - {k for k, v in orders.items() if v is not None}:
            raise ValueError(f"holds changed for orders the decision does not record: {sorted(stray)}")
        for sku, st in stocks.items():
            loaded = self.loaded[STOCKS.key(sku)]
            if loaded.state is None or STOCKS.write(st) != STOCKS.write(loaded.state):
                save(self.batch, loaded, cause if stock_input else None, Decision(await self._settled(sku, st)))
        for key, new in orders.items():
            loaded = self.loaded[ORDERS.key(key)]
            if new is not None and not loaded.seen(cause):
                save(self.batch, loaded, cause, Decision(with_holds(new, key, current), events.get(key, ())))

    async def _settled(self, sku: str, st: Stock) -> Stock:
        """The stock as it is written: the holds this batch changed go into `recent` and become the attached
        orders' baseline (a later message of the batch sees only its own changes). What this process's last
        write of the stock listed and its orders' documents stored in the same batch carry is dropped (the stock
        still at that version: `note_landed`). Once `recent` is longer than
        RECENT_MAX, the holds of orders not attached in this batch are checked against their stored order
        documents (one load) and those the documents already carry are dropped. An order document this batch
        changed is not stored yet (the stock is written first): its hold stays."""
        settled, changed = st.copy(), st.changed_holds()
        settled.recent = {**st.recent, **changed}
        settled.attached = st.current_holds()
        settled.candidates = st.noted(changed, CANDIDATES_MAX)
        loaded = self.loaded[STOCKS.key(sku)]
        if (note := self.batch.store.landed_note(loaded.key, loaded.doc.version)) is not None:
            holds, shipments = note  # what this process's last write of the stock left that its orders now carry
            settled.recent = {k: h for k, h in settled.recent.items() if holds.get(k) != h}
            settled.shipped = {s: k for s, k in settled.shipped.items() if s not in shipments}
        await self._paged(sku, settled)
        if len(settled.recent) > RECENT_MAX or len(settled.shipped) > SHIPPED_MAX:
            await self._pruned(sku, settled)
        return settled

    async def _pruned(self, sku: str, st: Stock) -> None:
        """Drop the `recent` holds of orders not attached in this batch, and the `shipped` shipments, that their
        stored order documents already carry (one load). An order document this batch changed is not stored
        yet (the stock is written first): what it carries stays listed."""
        check = {k for k in st.recent if k not in st.attached} | set(st.shipped.values())
        docs = await self._load(ORDERS, sorted(check))
        stored = {k: d.state for k, d in docs.items() if not d.doc.dirty}
        carried = {k for k in check if k in stored}
        st.recent = {k: h for k, h in st.recent.items() if k not in carried or holding(stored[k], sku) != h}
        st.shipped = {s: k for s, k in st.shipped.items() if k not in carried or not remembers(stored[k], s)}

    async def _paged(self, sku: str, st: Stock) -> None:
        """Keep the stock's `deciding` list bounded: beyond DECIDING_MAX lines, all but the oldest DECIDING_KEEP
        go to a new page document (`pages` = first, next); below DECIDING_LOW lines, the oldest page comes back
        (its lines of orders that decided meanwhile are dropped when stock is next offered to them). A page is
        written before its stock document, so a batch interrupted between the two leaves lines listed twice,
        never lost; a page that came back stays as it was (the stock document no longer counts it)."""
        first, after = st.pages
        if len(st.deciding) > DECIDING_MAX:
            oldest = sorted(st.deciding.items(), key=lambda kv: (kv[1]["since"], kv[0]))
            page = (await self._load(PAGES, [f"{sku}:{after}"]))[f"{sku}:{after}"]
            save(self.batch, page, None, Decision(dict(oldest[DECIDING_KEEP:])))
            st.deciding, st.pages = dict(oldest[:DECIDING_KEEP]), (first, after + 1)
        elif len(st.deciding) < DECIDING_LOW and first < after:
            page = (await self._load(PAGES, [f"{sku}:{first}"]))[f"{sku}:{first}"]
            st.deciding, st.pages = {**(page.state or {}), **st.deciding}, (first + 1, after)


def holding(order: OrderState | None, sku: str) -> Hold:
    """What an order's document says it holds of `sku` (nothing, for an order inventory does not know)."""
    return order.holds.get(sku, empty_hold()) if order is not None else empty_hold()


def remembers(order: OrderState | None, shipment: str) -> bool:
    """Whether an order's document remembers the shipment."""
    return order is not None and shipment in order.dispatched


def note_landed(docs: Store, written: list[Doc]) -> None:
    """After a batch landed whole: note on each stock document it wrote the `recent` holds and `shipped`
    shipments that the order documents it wrote carry, so the next write of that stock version drops them
    without loading those orders (`Repository._settled`). The documents are read in their typed views, kept
    since the batch decided them."""
    orders = {d.key.removeprefix(ORDER): typed(d, ORDERS) for d in written if d.key.startswith(ORDER)}
    for d in written:
        if not d.key.startswith(STOCK) or (st := typed(d, STOCKS)) is None:
            continue
        holds = {k: h for k, h in st.recent.items() if k in orders and holding(orders[k], st.sku) == h}
        shipments = frozenset(s for s, k in st.shipped.items() if k in orders and remembers(orders[k], s))
        if holds or shipments:
            docs.note_landed(d.key, d.version, (holds, shipments))


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


async def held_by_order(source: Store | Collection) -> dict[str, dict[tuple[str, str], int]]:
    """Units each order holds per (SKU, warehouse), by order number (its reservation ids' prefix), for operators
    and the invariant checks: the order documents' holds, unless a stock document's `recent` hold (newer)
    replaces them."""
    docs = source if isinstance(source, Store) else DocStore(source)
    holds: dict[tuple[str, str], Hold] = {}
    for key, state in (await docs.scan(ORDER)).items():
        for sku, hold in (state or {}).get("holds", {}).items():
            holds[(key.removeprefix(ORDER), sku)] = read_hold(hold)
    for key, state in (await docs.scan(STOCK)).items():
        st = Stock.from_doc(key.removeprefix(STOCK), state)
        holds.update({(order, st.sku): hold for order, hold in st.recent.items()})
    held: dict[str, dict[tuple[str, str], int]] = {}
    for (_, sku), hold in holds.items():
        for r, where in hold["r"].items():
            mine = held.setdefault(r.rsplit("#", 1)[0], {})
            for wh, q in where.items():
                mine[(sku, wh)] = mine.get((sku, wh), 0) + q
    return held
