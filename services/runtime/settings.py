"""Settings every service shares; each service subclasses it with its own env prefix."""

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Connection and tuning settings; the servers come from the usual unprefixed variables."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    mongodb_uri: str = Field("mongodb://127.0.0.1:27017/", validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"))
    mongodb_database: str = Field("orderflow", validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"))
    group_prefix: str = Field("", validation_alias=AliasChoices("KAFKA_GROUP_PREFIX", "group_prefix"))
    log_format: str = Field("json", validation_alias=AliasChoices("LOG_FORMAT", "log_format"))
    log_level: str = Field("INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    max_batch: int = 200
    health_port: int = 0  # /health/live, /health/ready and /metrics; 0 = off (set per service, e.g. 8080)
    linger_ms: int = 5
