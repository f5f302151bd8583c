"""Every command that needs Kafka or the store, with that server unreachable (its variable pointing at a
closed port, the other server real): one line on stderr naming the server, its address and the variable,
within the --timeout, and exit code 2; --debug shows the traceback instead."""

import time

import pytest
from typer.testing import CliRunner

from orderflow.cli import app
from orderflow.dev import stack

pytestmark = pytest.mark.e2e
K, S = "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"
COMMANDS: list[tuple[list[str], tuple[str, ...]]] = [
    (["services", "up"], (K, S)),
    (["demo", "--orders", "1"], (K, S)),
    (["simulate", "--seconds", "1"], (K,)),
    (["track", "web:NO-SUCH"], (S,)),
    (["order", "cancel", "web:NO-SUCH", "--wait", "0"], (K, S)),
    (["order", "review", "web:NO-SUCH", "approve", "--wait", "0"], (K, S)),
    (["order", "shortage", "web:NO-SUCH", "wait", "--wait", "0"], (K, S)),
    (["order", "priority", "web:NO-SUCH", "approve", "--wait", "0"], (K, S)),
    (["bench", "--quick"], (K, S)),
    (["lag"], (K,)),
    (["dashboard", "--port", "0"], (K,)),
    (["gateway", "--port", "0"], (K, S)),
    (["gateway", "key", "add", "--channel", "web"], (S,)),
    (["gateway", "key", "revoke", "abc"], (S,)),
    (["gateway", "key", "list"], (S,)),
    (["console", "--port", "0"], (K, S)),
    (["console", "up", "--port", "0"], (K, S)),
    (["console", "user", "add", "nobody", "--role", "clerk", "--password-stdin"], (S,)),
    (["console", "user", "passwd", "nobody", "--password-stdin"], (S,)),
    (["console", "user", "disable", "nobody"], (S,)),
    (["console", "user", "list"], (S,)),
]
CASES = [(args, down) for args, needs in COMMANDS for down in needs]
TIMEOUT = 1.0


def closed(variable: str) -> str:
    port = stack.unused_port()
    return f"127.0.0.1:{port}" if variable == K else f"mongodb://127.0.0.1:{port}/"


@pytest.mark.parametrize(("args", "down"), CASES, ids=[f"{' '.join(a[:2])}-{d.split('_')[0]}" for a, d in CASES])
def test_an_unreachable_server_is_one_line_and_exit_2(
    servers: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str], down: str
) -> None:
    address = closed(down)
    monkeypatch.setenv(K, servers[K])
    monkeypatch.setenv(S, servers[S])
    monkeypatch.setenv(down, address)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--timeout", str(TIMEOUT), *args])
    took = time.monotonic() - started
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    what = "Kafka" if down == K else "the store (MongoDB)"
    assert lines[0] == f"orderflow: cannot reach {what} at {address} within {TIMEOUT:g} s (set by {down})"
    assert took < TIMEOUT + 5


def test_debug_shows_the_traceback(servers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(K, closed(K))
    result = CliRunner().invoke(app, ["--timeout", "1", "--debug", "lag"])
    assert result.exit_code != 0 and result.exc_info is not None
    assert type(result.exception).__name__ == "Unreachable"
