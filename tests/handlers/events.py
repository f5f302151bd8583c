"""Internal events as the upstream services publish them, built with the contract models (contracts/internal.py)."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from contracts.internal import (
    Allocation,
    AllocationReserved,
    ApprovedLine,
    OrderAccepted,
    OrderApproved,
    OrderCancelled,
    OrderLine,
    OrderShipping,
    SupplyNeeded,
)
from contracts.public import ShipmentLine, ShipTo
from tests.factories import NOW

Line = tuple[str, int, str]  # sku, quantity, unit price
REQUESTED = NOW.date() + timedelta(days=10)


def wire(message: BaseModel) -> bytes:
    """A model as the JSON bytes a service publishes."""
    return message.model_dump_json().encode()


def okey(ref: str) -> str:
    """The order key (and Kafka key) of web order `ref`."""
    return f"web:{ref}"


def number(ref: str) -> str:
    """The order number intake gave web order `ref` in these tests."""
    return f"SO-T-{ref}"


def _order(ref: str, revision: int) -> dict[str, Any]:
    return {
        "order_key": okey(ref),
        "order_number": number(ref),
        "channel": "web",
        "channel_order_ref": ref,
        "revision": revision,
    }


def accepted(
    ref: str,
    lines: list[Line] | None = None,
    *,
    customer: str = "C-1001",
    revision: int = 1,
    payment_method: str = "credit_terms",
    special: dict[str, Any] | None = None,
    requested: date = REQUESTED,
    confirmation: str | None = None,
) -> OrderAccepted:
    """`order.accepted` for product master data as in tests.factories.product ('Product N', spec STD)."""
    rows = lines or [("SKU-0001", 10, "11.00")]
    order_lines = [
        OrderLine(
            line_no=i,
            sku=sku,
            product_name=f"Product {int(sku[-4:])}" if sku.startswith("SKU-") else sku,
            spec="STD",
            quantity=qty,
            uom="EA",
            unit_price=Decimal(price),
        )
        for i, (sku, qty, price) in enumerate(rows, start=1)
    ]
    return OrderAccepted(
        event_id=f"accepted-{ref}-{revision}",
        **_order(ref, revision),
        submitted_at=NOW,
        customer_id=customer,
        lines=order_lines,
        currency="CNY",
        total_amount=sum((l.quantity * l.unit_price for l in order_lines), Decimal(0)),
        payment_method=payment_method,
        requested_date=requested,
        priority="normal",
        special_requirements=special or {},
        customer_confirmation_ref=confirmation,
    )


def approved(
    ref: str,
    lines: list[Line] | None = None,
    *,
    revision: int = 1,
    make_to_order: bool = False,
    lead_days: int = 0,
    substitutes: list[str] | None = None,
    requested: date = REQUESTED,
) -> OrderApproved:
    """`order.approved` as review publishes it."""
    rows = lines or [("SKU-0001", 10, "11.00")]
    approved_lines = [
        ApprovedLine(
            line_no=i,
            sku=sku,
            quantity=qty,
            unit_price=Decimal(price),
            make_to_order=make_to_order,
            production_lead_days=lead_days,
            substitutes=substitutes or [],
        )
        for i, (sku, qty, price) in enumerate(rows, start=1)
    ]
    return OrderApproved(
        event_id=f"approved-{ref}-{revision}",
        **_order(ref, revision),
        customer_id="C-1001",
        requested_date=requested,
        currency="CNY",
        lines=approved_lines,
        total_amount=sum((l.quantity * l.unit_price for l in approved_lines), Decimal(0)),
        packaging="export_carton",
        notes="deliver before noon",
    )


def cancelled(ref: str, event_id: str | None = None) -> OrderCancelled:
    """`order.cancelled` as fulfillment publishes it."""
    return OrderCancelled(
        event_id=event_id or f"cancelled-{ref}", **_order(ref, 1), reason="customer asked", cancelled_by="cs-1"
    )


def shipping(ref: str) -> OrderShipping:
    """`order.shipping` as intake publishes it."""
    ship_to = ShipTo(recipient="Li Wei", line1="88 Wensan Rd", city="Hangzhou", postal_code="310012", country="CN")
    return OrderShipping(event_id=f"shipping-{ref}", **_order(ref, 1), ship_to=ship_to)


def reserved(
    ref: str,
    allocations: dict[str, list[Line]],
    *,
    complete: bool = True,
    more_to_come: bool = False,
    event_id: str | None = None,
    first_line: int = 1,
) -> AllocationReserved:
    """`allocation.reserved` as inventory publishes it: warehouse -> lines (sku, quantity, unit price)."""
    prices: dict[str, Decimal] = {}
    allocs = []
    line_no = first_line - 1
    for wh, rows in allocations.items():
        out = []
        for sku, qty, price in rows:
            line_no += 1
            prices[sku] = Decimal(price)
            out.append(ShipmentLine(line_no=line_no, sku=sku, quantity=qty))
        allocs.append(Allocation(warehouse=wh, lines=out))
    return AllocationReserved(
        event_id=event_id or f"reserved-{ref}",
        **_order(ref, 1),
        customer_id="C-1001",
        currency="CNY",
        allocations=allocs,
        prices=prices,
        charges=[],
        packaging="export_carton",
        notes="deliver before noon",
        complete=complete,
        more_to_come=more_to_come,
    )


def supply_needed(ref: str, kind: str, sku: str = "SIGN-CUSTOM", quantity: int = 4) -> SupplyNeeded:
    """`supply.needed` as inventory publishes it."""
    prefix = "PR" if kind == "production" else "PO-REQ"
    return SupplyNeeded(
        event_id=f"need-{kind}-{ref}",
        **_order(ref, 1),
        kind=kind,  # type: ignore[arg-type]
        request_id=f"{prefix}-{number(ref)}-1",
        sku=sku,
        quantity=quantity,
        needed_by=REQUESTED,
    )
