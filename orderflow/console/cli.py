"""`orderflow console [--port 8910]` serves the console; `orderflow console up|down` runs it in the background
(`make demo`, with a demo user per role); `orderflow console user add|passwd|disable|list` manages its users
(passwords read hidden from the terminal, or from stdin with --password-stdin)."""

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from orderflow import reach
from orderflow.console.auth import ROLES, Accounts, UserError
from orderflow.reach import KAFKA, STORE, needs

app = typer.Typer(help="The browser console: order entry, work queues, decisions, order pages.")
user_app = typer.Typer(help="Console users and their roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")
T = TypeVar("T")


def settings() -> Any:
    """The console's settings, pointed at the local stack when no servers are given in the environment."""
    from orderflow.console.serve import ConsoleSettings

    if not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI")):
        from orderflow.dev import stack

        for k, v in stack.env().items():
            os.environ.setdefault(k, v)
    return ConsoleSettings()


@app.callback(invoke_without_command=True)
def console(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="HTTP port")] = 8910,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    stuck: Annotated[str, typer.Option(help="status=age pairs past which an order is stuck (s, m, h, d)")] = "",
) -> None:
    """Serve the console (users: `orderflow console user add NAME --role ROLE`)."""
    if ctx.invoked_subcommand is None:
        _serve(port, host, stuck)


@needs(KAFKA, STORE, first=False)
def _serve(port: int, host: str, stuck: str) -> None:
    from orderflow.console.queues import STUCK
    from orderflow.console.serve import ConsoleSettings, serve
    from orderflow.dashboard_state import parse_stuck
    from services.runtime.logging import configure

    try:
        thresholds = parse_stuck(stuck or ConsoleSettings().console_stuck or STUCK)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stuck") from exc
    asyncio.run(reach.check(KAFKA, STORE))  # after --stuck is read, before the stack's defaults enter the env
    conf = settings()
    configure("console", conf.log_format, conf.log_level)
    typer.echo(f"console on http://{host}:{port}/  (users: orderflow console user list)")
    serve(conf, thresholds, host, port)


def _accounts_run(action: Callable[[Accounts], Awaitable[T]]) -> T:
    from orderflow.console.serve import database
    from services.runtime.service import mongo_client

    conf = settings()

    async def go() -> T:
        client = mongo_client(conf)
        try:
            return await action(Accounts(database(client, conf)))
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except UserError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _with_password(from_stdin: bool, action: Callable[[Accounts, str], Awaitable[None]], done: str) -> None:
    """Read a password (from stdin, or hidden from the terminal, typed twice), apply `action` with it, say `done`."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    _accounts_run(lambda a: action(a, password))
    typer.echo(done)


Name = Annotated[str, typer.Argument(help="user name (a-z, 0-9, . _ -)")]
FromStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]


@user_app.command("add")
@needs(STORE)
def user_add(
    name: Name,
    role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
    password_stdin: FromStdin = False,
) -> None:
    """Create a user with a role; the password is stored as an argon2id hash."""
    _with_password(password_stdin, lambda a, password: a.add(name, role, password), f"user {name} ({role}) added")


@user_app.command("passwd")
@needs(STORE)
def user_passwd(
    name: Name,
    role: Annotated[str | None, typer.Option(help="also change the role")] = None,
    password_stdin: FromStdin = False,
) -> None:
    """Set a user's password (enables a disabled user; ends the user's sessions)."""
    _with_password(password_stdin, lambda a, password: a.passwd(name, password, role), f"password of {name} set")


@user_app.command("disable")
@needs(STORE)
def user_disable(name: Name) -> None:
    """Disable a user and end the user's sessions."""
    _accounts_run(lambda a: a.disable(name))
    typer.echo(f"user {name} disabled")


@user_app.command("list")
@needs(STORE)
def user_list() -> None:
    """The users, their roles and whether they are disabled."""
    for u in _accounts_run(lambda a: a.list()):
        typer.echo(f"{u['_id']:<24}{u['role']:<18}{'disabled' if u.get('disabled') else 'enabled'}")


def answers(url: str, proc: "subprocess.Popen[bytes]", timeout: float = 60) -> bool:
    """Whether `url` answers before the process ends or `timeout` seconds pass (tried every 0.3 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.3)


def _pid_file() -> Path:
    from orderflow import procs

    return procs.log_path("console").parent.parent / "run" / "console.pid"


def _running() -> int | None:
    path = _pid_file()
    if not path.exists():
        return None
    pid = int(path.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@app.command("up")
@needs(KAFKA, STORE)
def console_up(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8910,
    demo_users: Annotated[
        bool, typer.Option("--demo-users", help="create (or reset) one user per role with a fresh password, printed")
    ] = False,
) -> None:
    """Start the console in the background (log in .orderflow/logs/console-1.log) and wait until it answers."""
    from orderflow import procs

    url = f"http://127.0.0.1:{port}/"
    if demo_users:
        rows = [(role.replace("_", "-"), role, secrets.token_urlsafe(9)) for role in ROLES]

        async def ensure(accounts: Accounts) -> None:
            for name, role, password in rows:
                try:
                    await accounts.add(name, role, password)
                except UserError:
                    await accounts.passwd(name, password, role)

        _accounts_run(ensure)
    pid = _running()
    if pid is None:
        _pid_file().parent.mkdir(parents=True, exist_ok=True)
        with open(procs.log_path("console"), "ab") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "orderflow"), "console", "--port", str(port)],
                env={**os.environ, **{k: v for k, v in _server_env().items() if k not in os.environ}},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _pid_file().write_text(f"{proc.pid} {port}")
        if not answers(url + "login", proc):
            typer.echo(f"the console did not start: see {procs.log_path('console')}", err=True)
            raise typer.Exit(1)
        pid = proc.pid
    else:
        url = f"http://127.0.0.1:{_pid_file().read_text().split()[1]}/"
    typer.echo(f"console on {url}  (pid {pid}, log {procs.log_path('console')})")
    if demo_users:
        typer.echo(f"  {'user':<20}{'role':<20}password")
        for name, role, password in rows:
            typer.echo(f"  {name:<20}{role:<20}{password}")


@app.command("down")
def console_down() -> None:
    """Stop the background console."""
    pid = _running()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _running() is None:
                break
            time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        _pid_file().unlink()
    typer.echo("console stopped")


def _server_env() -> dict[str, str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        return {}
    from orderflow.dev import stack

    return stack.env()
