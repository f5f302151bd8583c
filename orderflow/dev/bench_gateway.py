"""`orderflow bench --gateway`: orders/s accepted through the HTTP gateway against orders/s published straight to
Kafka, in the same run on the same servers.

Both sides send the same kind of complete sample orders to `orders.submitted` and count an order once Kafka
has acknowledged it (the producer's ack; the gateway's 202, which it sends only after the ack). The gateway
runs as its own process (`orderflow gateway`) on a scratch database with one key whose rate limit is out of
the way; the client keeps `concurrency` requests in flight. Services running on these servers will process
the orders (they are ordinary orders from channel `web`, references `GWB-<run>-…`).
"""

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import topics
from orderflow import bus, lag, sample
from orderflow.dev import stack
from orderflow.dev.bench import RESULTS_DIR, e2e_lock, git_commit, percentiles

Say = Callable[[str], None]
ORDERFLOW = str(Path(sys.executable).parent / "orderflow")


def orders(run: str, side: str, count: int) -> list[bytes]:
    """`count` complete orders from channel web as the JSON bytes a channel would send."""
    rng, now = random.Random(f"{run}-{side}"), datetime.now(UTC)
    return [
        json.dumps(sample.order(f"GWB-{run}-{side}-{i:06d}", rng, now, channel="web")).encode() for i in range(count)
    ]


async def direct(bootstrap: str, bodies: list[bytes]) -> dict[str, float]:
    """Publish every order with one producer and wait for every ack: orders/s."""
    async with bus.producer(bootstrap) as producer:
        began = time.perf_counter()
        keys = [f"web:{json.loads(b)['channel_order_ref']}" for b in bodies]
        await bus.publish(producer, topics.ORDERS_SUBMITTED, zip(keys, bodies, strict=True))
        took = time.perf_counter() - began
    return {"orders": len(bodies), "seconds": round(took, 2), "orders_per_s": round(len(bodies) / took, 1)}


async def through_gateway(url: str, key: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    """POST every order with `concurrency` requests in flight: orders/s answered 202 and their latency."""
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                res = await http.post("/v1/orders", content=body)
                latencies.append(time.perf_counter() - t)
                codes[res.status_code] = codes.get(res.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - began
    accepted = codes.get(202, 0)
    return {
        "orders": len(bodies),
        "accepted": accepted,
        "answers": {str(k): v for k, v in sorted(codes.items())},
        "concurrency": concurrency,
        "seconds": round(took, 2),
        "orders_per_s": round(accepted / took, 1),
        "latency_ms": {k: v and round(v * 1000, 1) for k, v in percentiles(latencies, len(latencies)).items()},
    }


@contextmanager
def gateway_process(env: dict[str, str], log: Path, **settings: str) -> Iterator[str]:
    """`orderflow gateway` on a free port with `env` and GATEWAY_<NAME> `settings`; yields its URL once it
    answers, and stops it (SIGTERM, SIGKILL after 20 s) when the block ends."""
    import httpx

    port = stack.unused_port()
    extra = {f"GATEWAY_{k.upper()}": v for k, v in settings.items()}
    full = {**os.environ, **env, "LOG_FORMAT": "json", **extra, "GATEWAY_PORT": str(port)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([ORDERFLOW, "gateway"], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def gateway_db(env: dict[str, str]) -> AsyncIterator[Any]:
    """The gateway's database on the servers and MONGODB_DATABASE `env` names."""
    from orderflow.gateway.settings import GatewaySettings
    from services.runtime.service import mongo_client

    settings = GatewaySettings().model_copy(
        update={"mongodb_uri": env["MONGODB_URI"], "mongodb_database": env["MONGODB_DATABASE"]}
    )
    client = mongo_client(settings)
    try:
        yield client[settings.database()]
    finally:
        await client.close()


async def add_key(env: dict[str, str], channel: str, rate: float | None = None, burst: int | None = None) -> str:
    """A new API key for `channel` in the gateway database `env` names."""
    from orderflow.gateway.keys import KeyStore

    async with gateway_db(env) as db:
        return await KeyStore(db["keys"]).add(channel, "bench", rate, burst)


async def _drop(env: dict[str, str]) -> None:
    async with gateway_db(env) as db:
        await db.client.drop_database(db.name)


def run(bootstrap: str, uri: str, count: int, concurrency: int, say: Say) -> dict[str, Any]:
    """Both measurements, the direct one first; the gateway stopped and its scratch database dropped after."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URI": uri,
        "MONGODB_DATABASE": f"benchgw_{tag}",
        "KAFKA_GROUP_PREFIX": f"benchgw-{tag}-",
    }
    say(f"  direct: publishing {count:,} orders to {topics.ORDERS_SUBMITTED} with one producer ...")
    result: dict[str, Any] = {"direct_kafka": asyncio.run(direct(bootstrap, orders(tag, "k", count)))}
    say(f"  direct: {result['direct_kafka']['orders_per_s']:,} orders/s acknowledged")
    saved = os.environ.get("KAFKA_GROUP_PREFIX")
    os.environ["KAFKA_GROUP_PREFIX"] = env["KAFKA_GROUP_PREFIX"]  # lag.start_at_end names the groups by it
    try:
        asyncio.run(lag.start_at_end(bootstrap, {"gateway": (topics.ORDERS_STATUS,)}))
    finally:
        if saved is None:
            os.environ.pop("KAFKA_GROUP_PREFIX")
        else:
            os.environ["KAFKA_GROUP_PREFIX"] = saved
    log = stack.state_dir() / "logs" / f"bench-gateway-{tag}.log"
    try:
        with gateway_process({**env, "LOG_LEVEL": "WARNING"}, log) as url:
            key = asyncio.run(add_key(env, "web", rate=1e6, burst=1_000_000))
            say(f"  gateway: POSTing {count:,} orders, {concurrency} requests in flight ...")
            result["gateway_http"] = asyncio.run(through_gateway(url, key, orders(tag, "h", count), concurrency))
    finally:
        asyncio.run(_drop(env))
    http = result["gateway_http"]
    say(
        f"  gateway: {http['orders_per_s']:,} orders/s answered 202 (p50 {http['latency_ms']['p50']} ms, "
        f"p99 {http['latency_ms']['p99']} ms; answers {http['answers']})"
    )
    result["gateway_vs_direct"] = round(http["orders_per_s"] / result["direct_kafka"]["orders_per_s"], 3)
    return result


def main(bootstrap: str, uri: str, count: int, concurrency: int, say: Say, results_dir: Path = RESULTS_DIR) -> None:
    """Run the gateway benchmark (holding the test sessions' lock), print it and write its JSON."""
    started_at = datetime.now(UTC)
    commit, dirty = git_commit()
    say(f"gateway benchmark: {count:,} orders straight to Kafka, then {count:,} through the HTTP gateway")
    with e2e_lock(bootstrap, say):
        figures = run(bootstrap, uri, count, concurrency, say)
    result = {"kind": "gateway", "started_at": started_at.isoformat(), "commit": commit, "dirty": dirty, **figures}
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{started_at:%Y%m%dT%H%M%SZ}-{commit[:10]}-gateway.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    say(
        f"through HTTP {figures['gateway_http']['orders_per_s']:,} orders/s vs direct Kafka "
        f"{figures['direct_kafka']['orders_per_s']:,} orders/s ({figures['gateway_vs_direct']:.1%}); JSON in {path}"
    )
