"""Settings every service shares; each service subclasses it with its own env prefix."""

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def secret(value: SecretStr, file: str) -> str:
    """The secret from `file` when one is named (surrounding whitespace dropped), else the value itself."""
    return Path(file).read_text().strip() if file else value.get_secret_value()


class KafkaClientSettings(BaseSettings):
    """How a Kafka client authenticates: PLAINTEXT unless a SASL mechanism and/or a TLS CA file are set."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_sasl_mechanism: str = Field(
        "", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism")
    )  # SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; empty = no SASL
    kafka_sasl_username: str = Field("", validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"))
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password")
    )
    kafka_sasl_password_file: str = Field(
        "", validation_alias=AliasChoices("KAFKA_SASL_PASSWORD_FILE", "kafka_sasl_password_file")
    )
    kafka_ssl_cafile: str = Field(
        "", validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile")
    )  # a CA bundle turns TLS on

    def kafka_password(self) -> str:
        """The SASL password, read from the password file when one is set."""
        return secret(self.kafka_sasl_password, self.kafka_sasl_password_file)


DEFAULT_PARTITIONS = 6


class TopicSettings(BaseSettings):
    """How the project's topics must be laid out on the cluster; local defaults 1/1/6, production sets more
    (deploy/k8s/config.yaml). A service creates missing topics so and refuses to start on weaker ones."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_topic_partitions: int = Field(
        DEFAULT_PARTITIONS, ge=1, validation_alias=AliasChoices("KAFKA_TOPIC_PARTITIONS", "kafka_topic_partitions")
    )
    kafka_topic_replication_factor: int = Field(
        1, ge=1, validation_alias=AliasChoices("KAFKA_TOPIC_REPLICATION_FACTOR", "kafka_topic_replication_factor")
    )
    kafka_topic_min_insync_replicas: int = Field(
        1, ge=1, validation_alias=AliasChoices("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "kafka_topic_min_insync_replicas")
    )


class ServiceSettings(KafkaClientSettings, TopicSettings):
    """Connection, topic layout and tuning settings; the servers come from the usual unprefixed variables."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    mongodb_uri: str = Field("mongodb://127.0.0.1:27017/", validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"))
    mongodb_database: str = Field("orderflow", validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"))
    # Credentials may also sit in MONGODB_URI; these keep the password out of it (TLS options go in the URI).
    mongodb_username: str = Field("", validation_alias=AliasChoices("MONGODB_USERNAME", "mongodb_username"))
    mongodb_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("MONGODB_PASSWORD", "mongodb_password")
    )
    mongodb_password_file: str = Field(
        "", validation_alias=AliasChoices("MONGODB_PASSWORD_FILE", "mongodb_password_file")
    )
    group_prefix: str = Field("", validation_alias=AliasChoices("KAFKA_GROUP_PREFIX", "group_prefix"))
    log_format: str = Field("json", validation_alias=AliasChoices("LOG_FORMAT", "log_format"))
    log_level: str = Field("INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    max_batch: int = 200
    # The broker holds each fetch until this many bytes wait for the consumer or `fetch_max_wait_ms` has passed:
    # the records of one wait, on every partition, come as one batch (one load, one write, one publish, one
    # offset commit); a backlog of 1 MiB is answered at once. Each service sets its wait (docs/performance.md).
    fetch_min_bytes: int = 1_048_576
    fetch_max_wait_ms: int = 100
    # How long one poll waits for fetched records; a poll that found none is followed by FastStream's pause of as
    # long. 0: the fetch wait + 50 ms (a poll outlasts a fetch). `bench --growth` sets 5 with a 1-byte minimum.
    poll_ms: int = 0
    health_port: int = 0  # /health/live, /health/ready and /metrics; 0 = off (set per service, e.g. 8080)
    # A batch's publish wave is queued whole before the producer's sender runs: lingering only delays it.
    linger_ms: int = 0

    def mongo_credentials(self) -> dict[str, Any]:
        """pymongo's username/password arguments; empty when no MONGODB_USERNAME is set."""
        if not self.mongodb_username:
            return {}
        return {
            "username": self.mongodb_username,
            "password": secret(self.mongodb_password, self.mongodb_password_file),
        }
