"""Fulfillment settings (env prefix FULFILLMENT_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class FulfillmentSettings(ServiceSettings):
    """Settings of the fulfillment service."""

    model_config = SettingsConfigDict(env_prefix="FULFILLMENT_", extra="ignore", frozen=True)
    batch_interval_ms: int = 100  # off the submit -> reserved path: a longer wait (docs/performance.md)
