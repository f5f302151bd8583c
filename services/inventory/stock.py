"""Stock of one SKU across warehouses, as pure data: on hand, reservations, in-transit promises.

Reserved quantities are derived from the live reservations, so `reserved = sum(reservations)`
holds by construction; every change keeps `reserved <= on_hand` per warehouse.
"""

from dataclasses import dataclass, field
from datetime import date
from typing import Any


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
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # reservation id -> {order_key, qty, since}

    def reserved(self, warehouse: str) -> int:
        """Quantity reserved in `warehouse`: the sum of the live reservations."""
        return sum(r.get(warehouse, 0) for r in self.reservations.values())

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

    def reserve(self, rid: str, where: dict[str, int]) -> None:
        """Hold `where` for reservation `rid`; refuses anything that would oversell."""
        for w, q in where.items():
            if q > self.available(w):
                raise ValueError(f"oversell refused: {self.sku}@{w} has {self.available(w)} available, asked {q}")
        current = self.reservations.setdefault(rid, {})
        for w, q in where.items():
            current[w] = current.get(w, 0) + q

    def release(self, rid: str) -> int:
        """Drop a reservation, its promises and its place in the waiting queue; returns units released."""
        released = sum(self.reservations.pop(rid, {}).values())
        for po in self.incoming.values():
            po.promised.pop(rid, None)
        self.waiting.pop(rid, None)
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
            held[warehouse] -= take
            if not held[warehouse]:
                del held[warehouse]
            if not held:
                del self.reservations[rid]
        self.on_hand[warehouse] = self.on_hand.get(warehouse, 0) - quantity

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
        return {
            "sku": self.sku,
            "on_hand": self.on_hand,
            "reservations": self.reservations,
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
        }

    @classmethod
    def from_doc(cls, sku: str, doc: dict[str, Any] | None) -> "Stock":
        """Rebuild from document form (an unknown SKU has no stock)."""
        if not doc:
            return cls(sku)
        return cls(
            sku,
            dict(doc.get("on_hand", {})),
            {k: dict(v) for k, v in doc.get("reservations", {}).items()},
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
            {k: dict(v) for k, v in doc.get("waiting", {}).items()},
        )
