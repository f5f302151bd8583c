"""Shared field types and base classes of every message."""

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def _reject_float(value: Any) -> Any:
    """Money travels as a decimal string; a float has already lost cents."""
    if isinstance(value, float):
        raise ValueError("money must be a decimal string such as '12.50', not a float")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_reject_float),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
]
# Money written by outside systems: plain decimal notation, exact, bounded (no exponent, no NaN, no spaces).
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,4})?")


def _wire_money(value: Any) -> Decimal:
    """Money from outside is a decimal string of at most 15 digits before the point and 4 after ('1250.00')."""
    if isinstance(value, float):
        _reject_float(value)
    if isinstance(value, Decimal):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"money must be a decimal string such as '12.50', not {type(value).__name__}")
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError(
            "money must be a plain decimal string such as '12.50': at most 15 digits before the point "
            "and 4 after, no exponent, no spaces"
        )
    return Decimal(value)


InboundMoney = Annotated[
    Decimal,
    BeforeValidator(_wire_money),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
]
Timestamp = AwareDatetime
Day = date
NonEmpty = Annotated[str, Field(min_length=1)]


class Inbound(BaseModel):
    """A message written by an outside system: frozen, tolerant of optional additions, numbers finite."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Owned(BaseModel):
    """A message this project writes: frozen and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(Owned):
    """Why an order is held, rejected or refused: a stable code, the field path, and a sentence."""

    code: str
    field: str | None = None
    message: str


def utc_iso(moment: datetime) -> str:
    """ISO-8601 text with offset for a timestamp."""
    return moment.isoformat()
