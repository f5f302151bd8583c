"""Fulfillment's documents as typed models, and the only code that knows their keys: order documents (each
with the order's timeline, the read model behind `orderflow track`), order-number aliases, supply links and
purchase lists.

Each model reads and writes the same JSON shape as before the models existed (`from_doc` / `to_doc`); the
timeline used to be a document of its own (`timeline:<order key>`, same shape): `find_timeline` still reads one
an older version wrote when the order document has none; an order in flight across that upgrade starts a new
timeline in its order document, which `orderflow track` then shows instead.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection

from contracts.internal import AllocationReserved, AllocationRevoked, OrderShipping, SupplyNeeded
from contracts.public import (
    CHANNELS,
    OrderCancel,
    OrderStatus,
    ProductionUpdated,
    PurchaseOrderUpdated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    ShipmentPacked,
    ShipmentPicked,
    ShipTo,
)
from services.runtime.batch import Batch
from services.runtime.messages import Incoming
from services.runtime.outbox import Store
from services.runtime.status import order_key
from services.runtime.steps import Kind, Loaded, load, prefetch_linked

Collection = AsyncCollection[dict[str, Any]]
Json = dict[str, Any]
ShipmentState = Literal["opened", "picked", "packed", "dispatched", "delivered", "exception", "voided"]
SupplyKind = Literal["production", "purchase"]
SHIPMENT_EVENTS = (ShipmentPicked, ShipmentPacked, ShipmentDispatched, ShipmentDelivered, ShipmentException)


def _opt(body: Json) -> Json:
    return {k: v for k, v in body.items() if v is not None}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _identity(d: Json) -> Json:
    return {"order_key": d["order_key"], "channel": d["channel"], "channel_order_ref": d["channel_order_ref"]}


# ---- the order ----
@dataclass(frozen=True, slots=True)
class Line:
    """A line of a shipment."""

    line_no: int
    sku: str
    quantity: int

    def to_doc(self) -> Json:
        """The stored form."""
        return {"line_no": self.line_no, "sku": self.sku, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class Shipment:
    """One warehouse's part of the order and where it is on its way."""

    warehouse: str
    lines: tuple[Line, ...]
    state: ShipmentState
    carrier: str | None = None
    tracking_number: str | None = None
    consumed: bool = False  # its stock.shipped was sent (once, at the first dispatch)
    delivered_at: datetime | None = None

    @classmethod
    def from_doc(cls, d: Json) -> "Shipment":
        """Read the stored form."""
        return cls(
            d["warehouse"],
            tuple(Line(l["line_no"], l["sku"], l["quantity"]) for l in d["lines"]),
            d["state"],
            d.get("carrier"),
            d.get("tracking_number"),
            bool(d.get("consumed")),
            datetime.fromisoformat(d["delivered_at"]) if d.get("delivered_at") else None,
        )

    def to_doc(self) -> Json:
        """The stored form."""
        return _opt(
            {
                "warehouse": self.warehouse,
                "lines": [l.to_doc() for l in self.lines],
                "state": self.state,
                "carrier": self.carrier,
                "tracking_number": self.tracking_number,
                "consumed": self.consumed or None,
                "delivered_at": _iso(self.delivered_at),
            }
        )


@dataclass(frozen=True, slots=True)
class SupplyNeed:
    """A production or purchase request the order waits on, and the date its supplier expects the goods."""

    kind: SupplyKind
    sku: str
    quantity: int
    needed_by: date
    revision: int
    expected: date | None = None

    @classmethod
    def from_doc(cls, d: Json) -> "SupplyNeed":
        """Read the stored form."""
        return cls(
            d["kind"],
            d["sku"],
            d["quantity"],
            date.fromisoformat(d["needed_by"]),
            d["revision"],
            _day(d.get("expected")),
        )

    def to_doc(self) -> Json:
        """The stored form."""
        return _opt(
            {
                "kind": self.kind,
                "sku": self.sku,
                "quantity": self.quantity,
                "needed_by": self.needed_by.isoformat(),
                "revision": self.revision,
                "expected": _iso(self.expected),
            }
        )


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """A separate charge of the order (e.g. packaging), for the invoice."""

    code: str
    description: str
    amount: Decimal

    def to_doc(self) -> Json:
        """The stored form."""
        return {"code": self.code, "description": self.description, "amount": str(self.amount)}


@dataclass(frozen=True, slots=True)
class Said:
    """A reason as the timeline keeps it."""

    code: str
    field: str | None
    message: str

    def to_doc(self) -> Json:
        """The stored form."""
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Entry:
    """One step of an order's timeline: a status as published, its details summarized, no contact data."""

    event_id: str
    status: str
    occurred_at: datetime
    revision: int | None
    order_number: str | None
    reasons: tuple[Said, ...]
    promise_date: date | None
    details: str
    decided_by: str | None
    # the `orders.status` offset it was consumed at (all statuses of an order share a partition); None for a
    # status fulfillment recorded with the decision that published it, until its copy comes back
    at: int | None = field(default=None, compare=False)
    # an entry never changes once made: the form it was read from is written back as is (a timeline is
    # rewritten with every status, and rebuilding each entry's JSON would be most of that cost)
    stored: Json | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_doc(cls, d: Json) -> "Entry":
        """Read the stored form."""
        return cls(
            d["event_id"],
            d["status"],
            datetime.fromisoformat(d["occurred_at"]),
            d.get("revision"),
            d.get("order_number"),
            tuple(Said(r["code"], r.get("field"), r["message"]) for r in d.get("reasons", [])),
            _day(d.get("promise_date")),
            d.get("details") or "",
            d.get("decided_by"),
            d.get("at"),
            d,
        )

    def to_doc(self) -> Json:
        """The stored form (every key present: `orderflow track` reads it as is)."""
        if self.stored is not None:
            return self.stored
        stored = {
            "event_id": self.event_id,
            "status": self.status,
            "occurred_at": self.occurred_at.isoformat(),
            "revision": self.revision,
            "order_number": self.order_number,
            "reasons": [r.to_doc() for r in self.reasons],
            "promise_date": _iso(self.promise_date),
            "details": self.details,
            "decided_by": self.decided_by,
        }
        return stored if self.at is None else stored | {"at": self.at}


@dataclass(frozen=True, slots=True)
class PendingCancel:
    """A cancel that came before anything was known of its order, kept until `until` (domain.CANCEL_GUARD)
    with the timeline entries of its answer, which join the order's timeline only if the order arrives in time."""

    command: OrderCancel
    until: datetime
    entries: tuple[Entry, ...] = ()

    @classmethod
    def from_doc(cls, d: Json) -> "PendingCancel":
        """Read the stored form."""
        return cls(
            OrderCancel.model_validate(d["command"]),
            datetime.fromisoformat(d["until"]),
            tuple(Entry.from_doc(e) for e in d.get("entries", [])),
        )

    def to_doc(self) -> Json:
        """The stored form."""
        return {
            "command": self.command.model_dump(mode="json"),
            "until": self.until.isoformat(),
            "entries": [e.to_doc() for e in self.entries],
        }


@dataclass(frozen=True, slots=True)
class Order:
    """What fulfillment keeps of one order: where it goes, what was reserved, its shipments, the supply it
    waits on, and fulfillment's own status of it (None while it waits for an allocation)."""

    order_key: str
    channel: str
    channel_order_ref: str
    order_number: str | None = None
    revision: int | None = None
    ship_to: ShipTo | None = None
    customer_id: str | None = None
    currency: str | None = None
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    charges: tuple[ChargeLine, ...] = ()
    complete: bool = True
    more_to_come: bool = False
    status: str | None = None
    shipments: Mapping[str, Shipment] = field(default_factory=dict)
    supply: Mapping[str, SupplyNeed] = field(default_factory=dict)
    announced_promise: date | None = None
    pending_cancel: PendingCancel | None = None
    timeline: "Timeline | None" = None  # every status published about the order (None: none seen yet)

    @property
    def known(self) -> bool:
        """Whether anything but a pending cancel was recorded: the order exists for fulfillment."""
        return bool(self.ship_to or self.shipments or self.supply or self.status or self.customer_id)

    @classmethod
    def from_doc(cls, d: Json) -> "Order":
        """Read the stored form."""
        return cls(
            d["order_key"],
            d["channel"],
            d["channel_order_ref"],
            d.get("order_number"),
            d.get("revision"),
            ShipTo.model_validate(d["ship_to"]) if d.get("ship_to") else None,
            d.get("customer_id"),
            d.get("currency"),
            {k: Decimal(v) for k, v in d.get("prices", {}).items()},
            tuple(ChargeLine(c["code"], c["description"], Decimal(c["amount"])) for c in d.get("charges", [])),
            d.get("complete", True),
            d.get("more_to_come", False),
            d.get("status"),
            {k: Shipment.from_doc(s) for k, s in d.get("shipments", {}).items()},
            {k: SupplyNeed.from_doc(s) for k, s in d.get("supply", {}).items()},
            _day(d.get("announced_promise")),
            PendingCancel.from_doc(d["pending_cancel"]) if d.get("pending_cancel") else None,
            Timeline.from_doc({**_identity(d), **d["timeline"]}) if d.get("timeline") else None,
        )

    def to_doc(self) -> Json:
        """The stored form."""
        return _opt(
            {
                "order_key": self.order_key,
                "channel": self.channel,
                "channel_order_ref": self.channel_order_ref,
                "order_number": self.order_number,
                "revision": self.revision,
                "ship_to": self.ship_to.model_dump(mode="json") if self.ship_to else None,
                "customer_id": self.customer_id,
                "currency": self.currency,
                "prices": {k: str(v) for k, v in self.prices.items()} or None,
                "charges": [c.to_doc() for c in self.charges] or None,
                "complete": None if self.complete else False,
                "more_to_come": self.more_to_come or None,
                "status": self.status,
                "shipments": {k: s.to_doc() for k, s in self.shipments.items()} or None,
                "supply": {k: s.to_doc() for k, s in self.supply.items()} or None,
                "announced_promise": _iso(self.announced_promise),
                "pending_cancel": self.pending_cancel.to_doc() if self.pending_cancel else None,
                "timeline": self.timeline.to_doc(with_identity=False) if self.timeline else None,
            }
        )


# ---- the read model and the links ----
@dataclass(frozen=True, slots=True)
class Timeline:
    """Every status of one order in the order they were published (the oldest beyond a limit counted in
    `dropped`), by key and by number."""

    order_key: str
    channel: str
    channel_order_ref: str
    order_number: str | None = None
    entries: tuple[Entry, ...] = ()
    dropped: int = 0

    @classmethod
    def from_doc(cls, d: Json) -> "Timeline":
        """Read the stored form."""
        return cls(
            d["order_key"],
            d["channel"],
            d["channel_order_ref"],
            d.get("order_number"),
            tuple(Entry.from_doc(e) for e in d.get("entries", [])),
            d.get("dropped", 0),
        )

    def to_doc(self, with_identity: bool = True) -> Json:
        """The form `orderflow track` reads; without the order's identity inside its order document."""
        entries = [e.to_doc() for e in self.entries]
        body = {"order_number": self.order_number, "entries": entries, "dropped": self.dropped}
        if not with_identity:
            return body
        ident = {"order_key": self.order_key, "channel": self.channel, "channel_order_ref": self.channel_order_ref}
        return ident | body


@dataclass(frozen=True, slots=True)
class Purchases:
    """The orders waiting on a purchase of one SKU, each with its purchase request ids."""

    sku: str
    orders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, d: Json) -> "Purchases":
        """Read the stored form."""
        return cls(d["sku"], {k: tuple(v) for k, v in d.get("orders", {}).items()})

    def to_doc(self) -> Json:
        """The stored form."""
        return {"sku": self.sku, "orders": {k: list(v) for k, v in self.orders.items()}}


@dataclass(frozen=True, slots=True)
class Link:
    """An order-number alias or a production request's link: the order it names."""

    order_key: str

    @classmethod
    def from_doc(cls, d: Json) -> "Link":
        """Read the stored form."""
        return cls(d["order_key"])

    def to_doc(self) -> Json:
        """The stored form."""
        return {"order_key": self.order_key}


# ---- the key scheme (here only) and the repository ----
ORDERS = Kind("order:", Order.from_doc, Order.to_doc)
OLD_TIMELINES = "timeline:"  # order key -> timeline, as versions before the timeline joined the order wrote it
ALIASES = Kind("number:", Link.from_doc, Link.to_doc)  # order number -> order key
SUPPLY_LINKS = Kind("supply:", Link.from_doc, Link.to_doc)  # production request id -> order key
PURCHASES = Kind("purchase:", Purchases.from_doc, Purchases.to_doc)  # SKU -> the orders waiting on a purchase


async def order(batch: Batch, order_key: str) -> Loaded[Order]:
    """Fulfillment's document of the order."""
    return await load(batch, ORDERS, order_key)


async def alias(batch: Batch, order_number: str) -> Loaded[Link]:
    """The alias naming the order an order number belongs to."""
    return await load(batch, ALIASES, order_number)


async def supply_link(batch: Batch, request_id: str) -> Loaded[Link]:
    """The link naming the order a production request was made for."""
    return await load(batch, SUPPLY_LINKS, request_id)


async def purchases(batch: Batch, sku: str) -> Loaded[Purchases]:
    """The orders waiting on a purchase of `sku`."""
    return await load(batch, PURCHASES, sku)


async def prefetch_orders(batch: Batch, order_keys: Iterable[str]) -> None:
    """Load the documents of these orders (with their timelines) in one round trip."""
    await batch.prefetch(ORDERS.key(key) for key in order_keys)


async def prefetch_aliased_orders(batch: Batch) -> None:
    """Load in one round trip, once per batch, the orders of the aliases loaded with it (its shipment events')."""
    await prefetch_linked(batch, ALIASES, lambda link: ORDERS.key(link.order_key))


def keys(msg: BaseModel, rec: Incoming) -> Iterable[str]:
    """The documents a message touches, loaded together with the batch."""
    if isinstance(msg, SupplyNeeded):
        link = SUPPLY_LINKS.key(msg.request_id) if msg.kind == "production" else PURCHASES.key(msg.sku)
        return [ORDERS.key(msg.order_key), link]
    if isinstance(msg, AllocationReserved):
        return [ORDERS.key(msg.order_key), *([ALIASES.key(msg.order_number)] if msg.order_number else [])]
    if isinstance(msg, OrderShipping | AllocationRevoked):
        return [ORDERS.key(msg.order_key)]
    if isinstance(msg, OrderCancel):
        key = order_key(msg.channel, msg.channel_order_ref)
        return [ORDERS.key(key)]
    if isinstance(msg, SHIPMENT_EVENTS):
        number = getattr(msg, "order_number", None) or rec.key
        return [ALIASES.key(number)] if number else []
    if isinstance(msg, OrderStatus):  # the alias is written with the first numbered status: `received`
        key = order_key(msg.channel, msg.channel_order_ref)
        numbered = [msg.order_number] if msg.order_number and msg.status == "received" else []
        return [ORDERS.key(key), *(ALIASES.key(n) for n in numbered)]
    if isinstance(msg, ProductionUpdated):
        return [SUPPLY_LINKS.key(msg.production_request_id)]
    if isinstance(msg, PurchaseOrderUpdated):
        return [PURCHASES.key(msg.sku)]
    return []


# ---- outside the batch: `orderflow track` ----


def is_order_key(ref: str) -> bool:
    """Whether `ref` is a "channel:channel_order_ref" key rather than an order number."""
    channel, sep, rest = ref.partition(":")
    return bool(sep and rest) and channel in CHANNELS


async def find_timeline(docs: Store, ref: str) -> Json | None:
    """The timeline of an order given as "channel:channel_order_ref" or by its order number, as `orderflow track`
    shows it; key lookups only (the alias, then the order document), so it stays instant whatever the number of
    orders. A timeline document an older version wrote is read when the order document has none."""
    ref = ref.strip()
    key: str | None = ref if is_order_key(ref) else None
    if key is None and ref:
        found = (await docs.load_many([ALIASES.key(ref)]))[ALIASES.key(ref)].state
        key = Link.from_doc(found).order_key if found else None
    if key is None:
        return None
    order_key, old_key = ORDERS.key(key), OLD_TIMELINES + key
    loaded = await docs.load_many([order_key, old_key])
    state = loaded[order_key].state
    if state and state.get("timeline"):
        timeline: Json = state["timeline"]
        entries = [{k: v for k, v in e.items() if k != "at"} for e in timeline["entries"]]
        return _identity(state) | timeline | {"entries": entries}
    old = loaded[old_key].state
    return dict(old) if old else None


def timeline_rows(order: Order) -> Iterable[tuple[str, Json]]:
    """The documents (id, state) that make `order`'s timeline findable by key and by number (for seeding a read
    model)."""
    yield ORDERS.key(order.order_key), order.to_doc()
    if order.timeline and order.timeline.order_number:
        yield ALIASES.key(order.timeline.order_number), Link(order.order_key).to_doc()
