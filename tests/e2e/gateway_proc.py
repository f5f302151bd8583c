"""`orderflow gateway` as a real process for the e2e tests, and keys made straight in its database (the
helpers `orderflow bench --gateway` uses)."""

from orderflow.dev.bench_gateway import add_key, gateway_db, gateway_process
from orderflow.gateway.keys import KeyStore

__all__ = ["new_key", "revoke", "running"]
running = gateway_process
new_key = add_key


async def revoke(env: dict[str, str], token: str) -> None:
    """Revoke a key."""
    async with gateway_db(env) as db:
        await KeyStore(db["keys"]).revoke(token)
