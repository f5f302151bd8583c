"""Intake settings (env prefix INTAKE_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """Settings of the intake service."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", frozen=True)
    batch_interval_ms: int = 100  # orders come one by one: batches of ~5 at 40/s instead of 1.5 (docs/performance.md)
