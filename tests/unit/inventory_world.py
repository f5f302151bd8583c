"""Inventory's documents held in memory and moved on by its pure decisions, as its handlers move them (for the
inventory unit tests)."""

from services.inventory import domain
from services.inventory.stock import Stock
from services.inventory.store import OrderState, View

PREFS = ("E", "W")


class Inventory:
    """Stocks by SKU and order states by order key."""

    def __init__(self, **on_hand: dict[str, int]) -> None:
        self.stocks = {sku: Stock(sku, dict(levels)) for sku, levels in on_hand.items()}
        self.orders: dict[str, OrderState | None] = {}

    def view(self) -> View:
        """What a decision reads now."""
        return View(dict(self.orders), dict(self.stocks))

    def apply(self, d: domain.Decision) -> domain.Decision:
        """Keep the decision's states (the view it was decided from stays as it was)."""
        self.stocks.update(d.new_state.stocks)
        self.orders.update(d.new_state.orders)
        return d

    def order(self, key: str) -> OrderState:
        """The state of an order inventory knows."""
        state = self.orders[key]
        assert state is not None, key
        return state

    def held(self, number: str) -> int:
        """Units reserved for the order numbered `number`."""
        mine = [w for st in self.stocks.values() for r, w in st.reservations.items() if r.startswith(f"{number}#")]
        return sum(sum(w.values()) for w in mine)
