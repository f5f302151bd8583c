"""`orderflow console [--port 8910]` serves the console; `orderflow console user add|passwd|disable|list`
manages its users (passwords read hidden from the terminal, or from stdin with --password-stdin)."""

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from orderflow.console.auth import ROLES, Accounts, UserError

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
    if ctx.invoked_subcommand is not None:
        return
    from orderflow.console.queues import STUCK
    from orderflow.console.serve import serve
    from orderflow.dashboard_state import parse_stuck
    from services.runtime.logging import configure

    conf = settings()
    try:
        thresholds = parse_stuck(stuck or conf.console_stuck or STUCK)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stuck") from exc
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


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


Name = Annotated[str, typer.Argument(help="user name (a-z, 0-9, . _ -)")]
FromStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]


@user_app.command("add")
def user_add(
    name: Name,
    role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
    password_stdin: FromStdin = False,
) -> None:
    """Create a user with a role; the password is stored as an argon2id hash."""
    password = _password(password_stdin)
    _accounts_run(lambda a: a.add(name, role, password))
    typer.echo(f"user {name} ({role}) added")


@user_app.command("passwd")
def user_passwd(
    name: Name,
    role: Annotated[str | None, typer.Option(help="also change the role")] = None,
    password_stdin: FromStdin = False,
) -> None:
    """Set a user's password (enables a disabled user; ends the user's sessions)."""
    password = _password(password_stdin)
    _accounts_run(lambda a: a.passwd(name, password, role))
    typer.echo(f"password of {name} set")


@user_app.command("disable")
def user_disable(name: Name) -> None:
    """Disable a user and end the user's sessions."""
    _accounts_run(lambda a: a.disable(name))
    typer.echo(f"user {name} disabled")


@user_app.command("list")
def user_list() -> None:
    """The users, their roles and whether they are disabled."""
    for u in _accounts_run(lambda a: a.list()):
        typer.echo(f"{u['_id']:<24}{u['role']:<18}{'disabled' if u.get('disabled') else 'enabled'}")
