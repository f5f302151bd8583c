"""Stock of one SKU across warehouses, as pure data: on hand, reservations, in-transit promises.

The stored stock document is bounded: it keeps counters (on hand and reserved per warehouse), purchase orders,
the waiting and deciding lines, and `recent`: the holds (reservations and owners) of the orders whose holds it
changed and whose order documents may not have been written yet (a batch interrupted between the two writes;
see `attach`); likewise `shipped`, the shipments it consumed that their orders' documents may not list yet.
Each order document keeps its own holds of every SKU. In memory, a stock is a view: the orders
a decision reads are `attach`ed (their reservations listed, by reservation id), the rest is the counter
`elsewhere`, so `reserved = elsewhere + sum(reservations)`; every change keeps `reserved <= on_hand`.

Each reservation and waiting line also records its owner (order key, priority, VIP, since when), so
a priority order can find the normal orders whose stock it may take (handbook 2.3.3). Inventory does
not see picking: a reservation counts as movable until a shipment of it is dispatched (`consume`,
on `stock.shipped`), or until it is handed to fulfillment ahead of a backordered remainder, after which
it is marked consumed and is never taken.

Orders awaiting the customer's decision on a shortage hold nothing, but each of their lines is listed under
`deciding` in its SKU's stock, so that stock released or received later finds them (`domain.refilled`). The
stored list is bounded: beyond DECIDING_MAX lines the youngest move to page documents of their own, numbered
`pages` = (first, next), and come back oldest page first as the list empties (`store.Repository`); decisions
see the lines on the stock document only.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NotRequired, TypedDict, cast


class Owner(TypedDict):
    """Whose reservation or waiting line it is; `consumed` once any of it is in fulfillment's hands."""

    order_key: str
    priority: str
    vip: bool
    since: str
    consumed: NotRequired[bool]


class Waiting(TypedDict):
    """A line waiting for goods: `qty` missing, since when (the queue's order), backorder or production."""

    order_key: str
    qty: int
    since: str
    kind: str
    request_id: NotRequired[str]


class Deciding(TypedDict):
    """A line of an order awaiting the customer's decision (it holds nothing)."""

    order_key: str
    since: str


class Hold(TypedDict):
    """What one order holds of one SKU: reservations (reservation id -> warehouse -> units) and owners (of its
    reservations and waiting lines)."""

    r: dict[str, dict[str, int]]
    o: dict[str, Owner]


def empty_hold() -> Hold:
    """A hold of nothing."""
    return Hold(r={}, o={})


@dataclass
class PurchaseOrder:
    """An in-transit purchase order and what of it is already promised to orders."""

    warehouse: str
    quantity: int
    eta: date
    status: str = "open"
    promised: dict[str, int] = field(default_factory=dict)

    def unpromised(self) -> int:
        """Quantity still free to promise."""
        return 0 if self.status != "open" else max(0, self.quantity - sum(self.promised.values()))


@dataclass
class Stock:
    """One SKU: on hand and reservations per warehouse, purchase orders, and orders waiting for goods."""

    sku: str
    on_hand: dict[str, int] = field(default_factory=dict)
    reservations: dict[str, dict[str, int]] = field(default_factory=dict)  # reservation id -> wh -> qty
    incoming: dict[str, PurchaseOrder] = field(default_factory=dict)  # po number -> PO
    waiting: dict[str, Waiting] = field(default_factory=dict)  # reservation id -> line waiting for goods
    owners: dict[str, Owner] = field(default_factory=dict)  # reservation id -> whose it is
    deciding: dict[str, Deciding] = field(default_factory=dict)  # reservation id -> order awaiting a decision
    elsewhere: dict[str, int] = field(default_factory=dict)  # warehouse -> units reserved by orders not attached
    recent: dict[str, Hold] = field(default_factory=dict)  # order key -> hold written here, maybe not on the order
    attached: dict[str, Hold] = field(default_factory=dict)  # order key -> its hold when attached (memory only)
    candidates: dict[str, int] = field(default_factory=dict)  # order key -> units it holds movably (bounded)
    pages: tuple[int, int] = (0, 0)  # the `deciding` lines spilled to page documents: first and next page number
    shipped: dict[str, str] = field(default_factory=dict)  # shipment id -> order key: consumed, maybe not on the order

    def reserved(self, warehouse: str) -> int:
        """Quantity reserved in `warehouse`: the orders not attached plus the attached reservations."""
        return self.elsewhere.get(warehouse, 0) + sum(r.get(warehouse, 0) for r in self.reservations.values())

    def attach(self, order_key: str, stored: Hold | None) -> None:
        """List what order `order_key` holds here among the reservations (out of `elsewhere`): its `recent` hold
        if this document has one (written here after the order document's last write, so newer), else `stored`
        (the order document's). Once per order; an order holding nothing is attached too (its changes are
        tracked)."""
        if order_key in self.attached:
            return
        hold = self.recent[order_key] if order_key in self.recent else stored or empty_hold()
        for r, where in hold["r"].items():
            self.reservations[r] = dict(where)
            for w, q in where.items():
                self.elsewhere[w] = max(0, self.elsewhere.get(w, 0) - q)  # never below: a stray hold over-reserves
        self.owners.update({r: cast(Owner, dict(o)) for r, o in hold["o"].items()})
        self.attached[order_key] = Hold(
            r={r: dict(w) for r, w in hold["r"].items() if r in hold["o"]},
            o={r: cast(Owner, dict(o)) for r, o in hold["o"].items()},
        )

    def current_holds(self) -> dict[str, Hold]:
        """What each attached order holds here now (by order key), read from the owner entries in one pass."""
        now = {k: empty_hold() for k in self.attached}
        for r, o in self.owners.items():
            if (hold := now.get(o["order_key"])) is not None:
                hold["o"][r] = o
                if r in self.reservations:
                    hold["r"][r] = dict(self.reservations[r])
        return now

    def noted(self, holds: Mapping[str, Hold], most: int) -> dict[str, int]:
        """The `candidates` a priority order may take stock from after `holds` changed: an order holding movable
        units is listed (while fewer than `most` are), one that holds none any more is taken off."""
        out = dict(self.candidates)
        for key, hold in holds.items():
            units = sum(
                sum(where.values()) for r, where in hold["r"].items() if r in hold["o"] and _movable(hold["o"][r])
            )
            if units and (key in out or len(out) < most):
                out[key] = units
            elif not units:
                out.pop(key, None)
        return out

    def changed_holds(self) -> dict[str, Hold]:
        """The attached orders whose holds differ from when they were attached: what their documents must get."""
        return {k: h for k, h in self.current_holds().items() if h != self.attached[k]}

    def available(self, warehouse: str) -> int:
        """On hand minus reserved in `warehouse`."""
        return self.on_hand.get(warehouse, 0) - self.reserved(warehouse)

    def total_available(self) -> int:
        """Available across every warehouse."""
        return sum(self.available(w) for w in self.on_hand)

    def plan(self, quantity: int, preference: tuple[str, ...]) -> dict[str, int] | None:
        """Where `quantity` can be reserved: one warehouse that serves it whole first, else split."""
        order = [w for w in preference if w in self.on_hand] + sorted(w for w in self.on_hand if w not in preference)
        for w in order:
            if self.available(w) >= quantity:
                return {w: quantity}
        if self.total_available() < quantity:
            return None
        split: dict[str, int] = {}
        left = quantity
        for w in order:
            take = min(left, max(0, self.available(w)))
            if take:
                split[w] = take
                left -= take
            if not left:
                break
        return split

    def reserve(self, rid: str, where: dict[str, int], owner: Owner | None = None) -> None:
        """Hold `where` for reservation `rid` (of `owner`, when given); refuses anything that would oversell."""
        for w, q in where.items():
            if q < 0:
                raise ValueError(f"negative reservation refused: {self.sku}@{w} {q}")
            if q > self.available(w):
                raise ValueError(f"oversell refused: {self.sku}@{w} has {self.available(w)} available, asked {q}")
        where = {w: q for w, q in where.items() if q}
        if not where:
            return
        current = self.reservations.get(rid, {})
        self.reservations[rid] = {**current, **{w: current.get(w, 0) + q for w, q in where.items()}}
        if owner is not None:
            self.own(rid, owner)

    def own(self, rid: str, owner: Owner) -> None:
        """Record whose reservation (or waiting line) `rid` is; a consumed mark is kept."""
        consumed = self.owners[rid].get("consumed", False) if rid in self.owners else False
        self.owners[rid] = Owner(**owner, consumed=True) if consumed else owner.copy()

    def movable(self, rid: str) -> bool:
        """Whether a priority order may take reservation `rid`: a live reservation of a known normal-priority,
        non-VIP order, none of which has been dispatched yet (inventory's stand-in for "not yet picked")."""
        owner = self.owners.get(rid)
        return rid in self.reservations and owner is not None and _movable(owner)

    def release(self, rid: str) -> int:
        """Drop a reservation, its promises and its place in the waiting queues; returns units released."""
        released = sum(self.reservations.pop(rid, {}).values())
        for po in self.incoming.values():
            po.promised.pop(rid, None)
        self.waiting.pop(rid, None)
        self.deciding.pop(rid, None)
        self.owners.pop(rid, None)
        return released

    def release_promise(self, rid: str) -> None:
        """A promise kept: the in-transit quantity it held is no longer promised."""
        for po in self.incoming.values():
            po.promised.pop(rid, None)

    def consume(self, rid: str, warehouse: str, quantity: int) -> None:
        """Shipped goods leave on hand and the reservation they were held under."""
        held = self.reservations.get(rid, {})
        take = min(quantity, held.get(warehouse, 0))
        if take:
            left = {w: q - take if w == warehouse else q for w, q in held.items()}
            left = {w: q for w, q in left.items() if q}
            if left:
                self.reservations[rid] = left
            else:
                del self.reservations[rid]
        self.on_hand[warehouse] = self.on_hand.get(warehouse, 0) - quantity
        if rid in self.owners:
            if rid in self.reservations or rid in self.waiting:
                self.owners[rid] = {**self.owners[rid], "consumed": True}  # in fulfillment's hands: never taken
            else:
                del self.owners[rid]

    def queue(self) -> list[tuple[str, Waiting]]:
        """The waiting lines, oldest first (the order they are served in)."""
        return sorted(self.waiting.items(), key=lambda kv: str(kv[1]["since"]))

    def fill(self, rid: str, preference: tuple[str, ...]) -> bool:
        """Reserve the whole missing quantity of waiting line `rid` (one warehouse first, else split) and take it
        out of the queue, its in-transit promise kept; False, with nothing changed, when too little is free."""
        where = self.plan(self.waiting[rid]["qty"], preference)
        if where is None:
            return False
        self.reserve(rid, where)
        self.release_promise(rid)
        del self.waiting[rid]
        return True

    def promise(self, rid: str, quantity: int, by: date) -> date | None:
        """Promise in-transit quantity arriving by `by`, first come first served; the latest ETA used."""
        open_pos = sorted(
            ((n, po) for n, po in self.incoming.items() if po.unpromised() and po.eta <= by), key=lambda x: x[1].eta
        )
        if sum(po.unpromised() for _, po in open_pos) < quantity:
            return None
        left, latest = quantity, None
        for _, po in open_pos:
            take = min(left, po.unpromised())
            po.promised[rid] = po.promised.get(rid, 0) + take
            left -= take
            latest = po.eta
            if not left:
                break
        return latest

    def best_eta(self, quantity: int) -> date | None:
        """The earliest date open purchase orders could cover `quantity`, if they can."""
        left = quantity
        for po in sorted((p for p in self.incoming.values() if p.unpromised()), key=lambda p: p.eta):
            left -= po.unpromised()
            if left <= 0:
                return po.eta
        return None

    def to_doc(self) -> dict[str, Any]:
        """Document form."""
        recent = {**self.recent, **self.changed_holds()}
        return {
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reserved": {w: n for w in sorted({*self.on_hand, *self.elsewhere}) if (n := self.reserved(w))},
            "recent": recent,
            "candidates": self.candidates,
            "incoming": {
                n: {
                    "warehouse": p.warehouse,
                    "quantity": p.quantity,
                    "eta": p.eta.isoformat(),
                    "status": p.status,
                    "promised": p.promised,
                }
                for n, p in self.incoming.items()
            },
            "waiting": self.waiting,
            "deciding": self.deciding,
            **({"pages": list(self.pages)} if self.pages != (0, 0) else {}),
            **({"shipped": self.shipped} if self.shipped else {}),
        }

    @classmethod
    def from_doc(cls, sku: str, doc: dict[str, Any] | None) -> "Stock":
        """Rebuild from document form (an unknown SKU has no stock)."""
        if not doc:
            return cls(sku)
        recent = {k: read_hold(h) for k, h in doc.get("recent", {}).items()}
        elsewhere = {w: int(n) for w, n in doc.get("reserved", {}).items()}
        if "reservations" in doc:  # the unbounded form of old: its reservations become holds to attach
            recent = {**_legacy_holds(doc["reservations"], doc.get("owners", {})), **recent}
            for where in doc["reservations"].values():
                for w, q in where.items():
                    elsewhere[w] = elsewhere.get(w, 0) + q
        return cls(
            sku,
            dict(doc.get("on_hand", {})),
            {},
            {
                n: PurchaseOrder(
                    p["warehouse"],
                    p["quantity"],
                    date.fromisoformat(p["eta"]),
                    p["status"],
                    dict(p.get("promised", {})),
                )
                for n, p in doc.get("incoming", {}).items()
            },
            cast(dict[str, Waiting], {k: dict(v) for k, v in doc.get("waiting", {}).items()}),
            {},
            cast(dict[str, Deciding], {k: dict(v) for k, v in doc.get("deciding", {}).items()}),
            elsewhere,
            recent,
            candidates={k: int(n) for k, n in doc.get("candidates", {}).items()},
            pages=(int(doc["pages"][0]), int(doc["pages"][1])) if "pages" in doc else (0, 0),
            shipped=dict(doc.get("shipped", {})),
        )

    def copy(self) -> "Stock":
        """An independent copy: what a decision changes, leaving the stock it was given as it was. The entries of
        reservations, waiting lines, owners and decisions are shared: they are replaced, never changed in place."""
        return Stock(
            self.sku,
            dict(self.on_hand),
            dict(self.reservations),
            {
                n: PurchaseOrder(p.warehouse, p.quantity, p.eta, p.status, dict(p.promised))
                for n, p in self.incoming.items()
            },
            dict(self.waiting),
            dict(self.owners),
            dict(self.deciding),
            dict(self.elsewhere),
            dict(self.recent),
            dict(self.attached),
            dict(self.candidates),
            self.pages,
            dict(self.shipped),
        )


def _movable(owner: Owner) -> bool:
    """A normal-priority, non-VIP owner none of whose stock is in fulfillment's hands."""
    return owner.get("priority", "normal") == "normal" and not owner.get("vip", False) and not owner.get("consumed")


def read_hold(doc: Mapping[str, Any]) -> Hold:
    """A hold from its document form."""
    return Hold(
        r={r: dict(where) for r, where in doc.get("r", {}).items()},
        o={r: cast(Owner, dict(o)) for r, o in doc.get("o", {}).items()},
    )


def _legacy_holds(reservations: Mapping[str, Any], owners: Mapping[str, Any]) -> dict[str, Hold]:
    """The holds by order key an old stock document kept inline (reservations without an owner are left to the
    counter: no order claims them)."""
    holds: dict[str, Hold] = {}
    for r, o in owners.items():
        hold = holds.setdefault(o["order_key"], empty_hold())
        hold["o"][r] = cast(Owner, dict(o))
        if r in reservations:
            hold["r"][r] = dict(reservations[r])
    return holds
