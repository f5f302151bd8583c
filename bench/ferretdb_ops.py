"""FerretDB alone: the CPU one FerretDB binary spends per document operation on documents of our packed shape.

Starts the binary on a scratch SQLite directory (the URL and environment `orderflow stack` uses), stores 3,000
order-like documents (state, inbox and pending packed as `DocStore` packs them), then loads them 20 at a time with `$in`
and writes each batch back with version-guarded `$set`s, four rounds: 24,000 document operations. Prints the
FerretDB process's CPU per operation. Compare two binaries (or GOGC values) by running it for each, alternating:

    PYTHONPATH=. .venv/bin/python bench/ferretdb_ops.py ~/.cache/orderflow/ferretdb-<hash>/ferretdb [port] [label]

Used for ADR 0007's "JSON v2" update (session 12).
"""

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bson
import orjson
import psutil
from pymongo import MongoClient, UpdateOne

from orderflow.dev.stack import ferretdb_env, ferretdb_sqlite_url
from services.runtime.outbox import packed

DOCS, BATCH, ROUNDS = 3000, 20, 4


def order(i: int, rng: random.Random) -> dict[str, Any]:
    """An order-like document as DocStore stores it: a shipped order's timeline, its inbox and one pending event."""
    steps = ("picked", "packed", "shipped")
    lines = [{"line_no": k, "sku": f"SKU-{rng.randrange(5000):04d}", "qty": rng.randrange(1, 9)} for k in range(4)]
    state = {
        "order_number": f"SO-{i:06d}",
        "status": "shipped",
        "timeline": [
            {"at": "2026-12-04T16:53:54.123456Z", "status": s, "shipment": f"SHP-{i}-{j}", "lines": lines}
            for j, s in enumerate(steps)
        ],
    }
    event = {"topic": "orders.status", "key": f"web:{i}", "value": orjson.dumps(state).decode()}
    inbox = [f"evt-{i}-{j}" for j in range(6)]
    return packed({"_id": f"order:{i}", "v": 1, "state": state, "inbox": inbox, "pending": [event]})


def main(binary: str, port: int, label: str) -> None:
    """Run the operations against a fresh FerretDB and print its CPU per document operation."""
    url = ferretdb_sqlite_url(Path(tempfile.mkdtemp(prefix="ferretdb-ops-")))
    cmd = [binary, "-listen-addr", f"127.0.0.1:{port}", "-sqlite-url", url, "-handler", "sqlite"]
    env = {**os.environ, **ferretdb_env()}
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # the first command waits (server selection) until FerretDB listens
        client: MongoClient[dict[str, Any]] = MongoClient(f"mongodb://127.0.0.1:{port}/")
        docs = client["ops"]["docs"]
        rng = random.Random(1)
        docs.insert_many([order(i, rng) for i in range(DOCS)])
        proc = psutil.Process(server.pid)
        cpu0, ops = sum(proc.cpu_times()[:2]), 0
        keys, fields = [f"order:{i}" for i in range(DOCS)], ("state", "inbox", "pending")
        for _ in range(ROUNDS):
            for start in range(0, DOCS, BATCH):
                found = list(docs.find({"_id": {"$in": keys[start : start + BATCH]}}, batch_size=BATCH + 1))
                ops += 2 * len(found)
                writes = [
                    UpdateOne({"_id": d["_id"], "v": d["v"]}, {"$set": {"v": d["v"] + 1, **{f: d[f] for f in fields}}})
                    for d in found
                ]
                docs.bulk_write(writes, ordered=False)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        size = sum(len(bson.encode(d)) for d in found) // len(found)
        print(
            f"{label}: {ops} document operations, FerretDB CPU {cpu:.2f} s = {cpu / ops * 1e6:.0f} µs each ({size} B)"
        )
        client.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 27300, sys.argv[3] if len(sys.argv) > 3 else "run")
