"""`orderflow gateway [--port 8920]` serves the gateway; `orderflow gateway key add|revoke|list` manages keys."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from orderflow.reach import KAFKA, STORE, needs

if TYPE_CHECKING:
    from orderflow.gateway.keys import KeyStore

T = TypeVar("T")
# Seconds an idle client connection stays open: above the 60 s idle timeout of common load balancers, so the
# gateway never closes a connection a client or proxy is about to reuse (uvicorn's default is 5 s).
KEEP_ALIVE = 75
app = typer.Typer(help="The HTTP order gateway for channels (FastAPI on uvicorn) and its API keys.")
key_app = typer.Typer(help="API keys: one channel each, stored hashed.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="HTTP port (default GATEWAY_PORT or 8920)")] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default GATEWAY_HOST or 127.0.0.1)")] = None,
) -> None:
    """Serve POST /v1/orders, /v1/orders/{channel}/{ref}/revisions, /v1/commands and GET /v1/orders/{channel}/{ref}."""
    if ctx.invoked_subcommand is None:
        _serve(port, host)


@needs(KAFKA, STORE)
def _serve(port: int | None, host: str | None) -> None:
    import uvicorn

    from orderflow.gateway.app import create_app
    from orderflow.gateway.settings import GatewaySettings
    from services.runtime import logging as runtime_logging
    from services.runtime import tracing

    given = {k: v for k, v in (("port", port), ("host", host)) if v is not None}
    settings = GatewaySettings().model_copy(update=given)
    tracing.configure("gateway")  # OTLP traces only when the OTEL_* variables ask for them
    runtime_logging.configure("gateway", settings.log_format, settings.log_level)
    typer.echo(f"gateway on http://{settings.host}:{settings.port}/  (OpenAPI /openapi.json, docs /docs)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE,
    )


def _with_keys(action: "Callable[[KeyStore], Awaitable[T]]") -> T:
    from orderflow.gateway.keys import KeyProblem, KeyStore
    from orderflow.gateway.settings import GatewaySettings
    from services.runtime.service import mongo_client

    settings = GatewaySettings()

    async def go() -> T:
        client = mongo_client(settings)
        try:
            return await action(KeyStore(client[settings.database()]["keys"]))
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except KeyProblem as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@key_app.command("add")
@needs(STORE)
def key_add(
    channel: Annotated[str, typer.Option(help="the channel the key acts for: web, email, fax, phone, sales_rep, edi")],
    label: Annotated[str, typer.Option(help="who holds it (shown by `key list`)")] = "",
    rate: Annotated[float | None, typer.Option(help="requests/s allowed (default GATEWAY_RATE)")] = None,
    burst: Annotated[int | None, typer.Option(help="requests allowed at once (default GATEWAY_BURST)")] = None,
) -> None:
    """Create a key for one channel and print it once: only its SHA-256 is stored."""
    token = _with_keys(lambda keys: keys.add(channel, label, rate, burst))
    typer.echo(token)


@key_app.command("revoke")
@needs(STORE)
def key_revoke(key: Annotated[str, typer.Argument(help="the key's id (from `key list`) or the key itself")]) -> None:
    """Revoke a key: refused from its next request on."""
    key_id = _with_keys(lambda keys: keys.revoke(key))
    typer.echo(f"revoked {key_id}")


@key_app.command("list")
@needs(STORE)
def key_list() -> None:
    """Every key: id, channel, label, limits, created and revoked dates (never the key)."""
    for doc in _with_keys(lambda keys: keys.list()):
        revoked = f"revoked {doc['revoked_at']:%Y-%m-%d %H:%M}" if doc.get("revoked_at") else "active"
        typer.echo(
            f"{doc['_id']}  {doc['channel']:<10} {revoked:<24} rate={doc.get('rate') or '-'} "
            f"burst={doc.get('burst') or '-'}  {doc.get('label', '')}"
        )
