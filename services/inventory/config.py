"""Inventory settings (env prefix INVENTORY_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    """Settings of the inventory service."""

    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore", frozen=True)

    warehouse_preference: tuple[str, ...] = ("WH-EAST", "WH-WEST")
    fetch_max_wait_ms: int = 25  # the slowest hop at the sustained rate: a short wait (docs/performance.md)
