"""`orderflow gateway` as a real process for the e2e tests, and keys made straight in its database."""

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from orderflow.dev import stack
from orderflow.gateway.keys import KeyStore
from orderflow.gateway.settings import GatewaySettings
from services.runtime.service import mongo_client

ORDERFLOW = str(Path(sys.executable).parent / "orderflow")


@contextmanager
def running(env: dict[str, str], log: Path, **settings: str) -> Iterator[str]:
    """The gateway on a free port with `env` (plus GATEWAY_<NAME> settings); yields its base URL, stopped after."""
    port = stack.unused_port()
    extra = {f"GATEWAY_{k.upper()}": v for k, v in settings.items()}
    full = {**os.environ, **env, **extra, "GATEWAY_PORT": str(port), "LOG_FORMAT": "json"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([ORDERFLOW, "gateway"], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def new_key(env: dict[str, str], channel: str, rate: float | None = None, burst: int | None = None) -> str:
    """A fresh API key for `channel` in the gateway database `env` names."""
    async with _keys(env) as keys:
        return await keys.add(channel, "test", rate, burst)


async def revoke(env: dict[str, str], token: str) -> None:
    """Revoke a key."""
    async with _keys(env) as keys:
        await keys.revoke(token)


@asynccontextmanager
async def _keys(env: dict[str, str]) -> AsyncIterator[KeyStore]:
    settings = GatewaySettings().model_copy(
        update={"mongodb_uri": env["MONGODB_URI"], "mongodb_database": env["MONGODB_DATABASE"]}
    )
    client = mongo_client(settings)
    try:
        yield KeyStore(client[settings.database()]["keys"])
    finally:
        await client.close()
