"""Intake settings (env prefix INTAKE_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """Settings of the intake service."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", frozen=True)
    fetch_max_wait_ms: int = 100  # orders come one by one: the records of 100 ms share a batch (docs/performance.md)
