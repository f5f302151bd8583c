"""Review settings (env prefix REVIEW_)."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class ReviewSettings(ServiceSettings):
    """Settings of the review service; the policy knobs of handbook 2.2."""

    model_config = SettingsConfigDict(env_prefix="REVIEW_", extra="ignore", frozen=True)

    credit_tolerance_pct: float = 10.0
    discount_tolerance_points: float = 5.0
    manual_note_words: tuple[str, ...] = ("custom", "customise", "customize", "logo", "engrave", "定制", "印字")
    fetch_max_wait_ms: int = 50  # measured with the others (docs/performance.md)
