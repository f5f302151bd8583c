"""Fulfillment settings (env prefix FULFILLMENT_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class FulfillmentSettings(ServiceSettings):
    """Settings of the fulfillment service."""

    model_config = SettingsConfigDict(env_prefix="FULFILLMENT_", extra="ignore", frozen=True)
    # off the submit -> reserved path: a longer wait lets an order's statuses share one write (docs/performance.md)
    fetch_max_wait_ms: int = 400
    max_batch: int = 500  # it consumes ~12 records per order (statuses, warehouse events): 200 filled every batch
