"""The gateway's settings: the servers as every service takes them, plus its own under the GATEWAY_ prefix."""

from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings

NAME = "gateway"


class GatewaySettings(ServiceSettings):
    """Connection settings (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, ...) and GATEWAY_* tuning."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8920
    ack_timeout: float = 5.0  # seconds to wait for Kafka's acknowledgement before answering 503
    retry_after: int = 5  # seconds a client is told to wait after a 503
    rate: float = 50.0  # requests per second per API key (a key may carry its own)
    burst: int = 100  # requests a key may send at once before the rate applies
    key_cache: float = 1.0  # seconds a key's record is reused: a revocation takes effect within this time
    linger_ms: int = 5  # requests publish one message each, concurrently: a short linger lets them share a send

    def database(self) -> str:
        """The gateway's own database: `<MONGODB_DATABASE>_gateway`."""
        return f"{self.mongodb_database}_{NAME}"
