"""The `orderflow` command: local servers, the four services, the demo, the simulator, lag."""

import asyncio
import json
import os
from typing import Annotated, Any

import typer

from orderflow import procs, reach
from orderflow.console.cli import app as console_app
from orderflow.dashboard_state import STUCK
from orderflow.dev import jaeger, stack
from orderflow.gateway.cli import app as gateway_app
from orderflow.reach import KAFKA, STORE, needs, set_options

app = typer.Typer(help="orderflow: order processing on Kafka + a MongoDB-wire store.", no_args_is_help=True)
stack_app = typer.Typer(help="Local Kafka (KRaft) and FerretDB, provisioned without Docker.", no_args_is_help=True)
services_app = typer.Typer(help="The four services as background processes.", no_args_is_help=True)
order_app = typer.Typer(
    help="Act on one order as customer service or a supervisor: cancel, review, shortage, priority.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(services_app, name="services")
app.add_typer(order_app, name="order")
app.add_typer(console_app, name="console")
app.add_typer(gateway_app, name="gateway")


@app.callback()
def root(
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for Kafka or the store before giving up (exit code 2)")
    ] = 5.0,
    debug: Annotated[bool, typer.Option(help="show the traceback of a failure instead of one line")] = False,
) -> None:
    """orderflow: order processing on Kafka + a MongoDB-wire store."""
    set_options(timeout, debug)


def _bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.env()["KAFKA_BOOTSTRAP_SERVERS"]


@stack_app.command("up")
def stack_up(
    secure: Annotated[
        bool, typer.Option("--secure", help="SASL_SSL + per-service ACLs on Kafka, TLS + credentials on FerretDB")
    ] = False,
    tracing: Annotated[
        bool, typer.Option("--tracing", help="also a local Jaeger (built once from the Go proxy); services trace to it")
    ] = False,
) -> None:
    """Build/download if needed, start Kafka and FerretDB, create the topics; prints the addresses."""
    from services.runtime.kafka import ensure_topics

    if secure:
        os.environ["ORDERFLOW_SECURE"] = "1"
    env = stack.up(progress=typer.echo)
    if not stack.secure():  # secure mode's `up` created them as the admin principal
        asyncio.run(ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"]))
    for k, v in env.items():
        typer.echo(f"{k}={v}")
    if tracing:
        typer.echo(f"JAEGER_UI={jaeger.start(progress=typer.echo)}")
        typer.echo(f"OTEL_EXPORTER_OTLP_ENDPOINT={jaeger.otlp_url()}  (`services up` sets it while Jaeger runs)")


@stack_app.command("down")
def stack_down() -> None:
    """Stop Kafka and FerretDB (data is kept), and Jaeger if `--tracing` started it."""
    jaeger.stop(progress=typer.echo)
    stack.down(progress=typer.echo)


@stack_app.command("reset")
def stack_reset() -> None:
    """Stop the servers and delete their data."""
    stack.reset(progress=typer.echo)


@stack_app.command("status")
def stack_status() -> None:
    """Whether each server runs, with its pid and address."""
    for name, st in stack.status().items():
        typer.echo(f"{name:<10} {'running' if st['running'] else 'stopped':<8} pid={st['pid']} {st['address']}")
    if (pid := jaeger.running_pid()) is not None:
        typer.echo(f"{'jaeger':<10} {'running':<8} pid={pid} {jaeger.ui_url()}")


@services_app.command("up")
@needs(KAFKA, STORE)
def services_up(replicas: Annotated[int, typer.Option(help="replicas of each service")] = 1) -> None:
    """Start the services in the background, each replica with its own health/metrics port; logs in .orderflow/logs/."""
    for name, pids in procs.up(replicas).items():
        for replica, pid in enumerate(pids, start=1):
            where = f"{_health_url(name, replica)}  log {procs.log_path(name, replica)}"
            typer.echo(f"{name + '-' + str(replica):<14} pid {pid:<8} {where}")
    typer.echo("each port also serves /health/live, /health/ready and /docs/asyncapi")


def _health_url(service: str, replica: int) -> str:
    port = procs.health_port(service, replica)
    return f"http://127.0.0.1:{port}/metrics" if port else "(no health port)"


@services_app.command("down")
def services_down() -> None:
    """Stop every service replica gracefully (SIGTERM: finish the batch, commit)."""
    procs.down()
    typer.echo("services stopped")


@services_app.command("status")
def services_status() -> None:
    """The running replicas of each service."""
    for name in procs.SERVICES:
        running = procs.replicas(name)
        typer.echo(f"{name:<12} replicas {running}")
        for replica in running:
            typer.echo(f"  {name}-{replica}: {_health_url(name, replica)}")


@app.command()
@needs(KAFKA, STORE)
def demo(
    orders: Annotated[int, typer.Option(help="orders to publish")] = 60,
    timeout: Annotated[float, typer.Option(help="seconds to wait for orders to settle")] = 180,
) -> None:
    """Load sample data, publish orders from every channel, play warehouse and carrier, print a table."""
    from orderflow.demo import run

    figures = asyncio.run(run(_bootstrap(), orders, timeout, typer.echo))
    unsettled = sum(figures["unsettled"].values())
    if unsettled:
        typer.echo(f"demo failed: {unsettled} of {figures['orders']} orders did not settle", err=True)
        raise typer.Exit(1)


@app.command()
@needs(KAFKA)
def simulate(
    exception_rate: Annotated[float, typer.Option(help="share of shipments with a delivery exception")] = 0.05,
    seconds: Annotated[float, typer.Option(help="how long to run (0 = until Ctrl-C)")] = 0,
) -> None:
    """Play warehouse and carrier for opened shipments (pick, pack, dispatch, deliver or exception)."""
    from orderflow.simulator import Simulator

    async def go() -> None:
        stop = asyncio.Event()
        if seconds:
            asyncio.get_running_loop().call_later(seconds, stop.set)
        await Simulator(_bootstrap(), exception_rate=exception_rate).run(stop)

    asyncio.run(go())


@app.command("track")
@needs(STORE)
def track_cmd(
    ref: Annotated[str, typer.Argument(help="channel:channel_order_ref (e.g. web:WEB-100234) or an order number")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every step of one order: status, time, revision, reasons, details, and who or which rule decided."""
    from rich.console import Console

    from orderflow import track

    timeline = asyncio.run(track.fetch(ref))
    if timeline is None:
        typer.echo(f"no order {ref!r} known (give channel:channel_order_ref or an order number)", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(timeline))
    else:
        track.show(Console(), timeline)


OrderRef = Annotated[str, typer.Argument(help="channel:channel_order_ref (e.g. web:WEB-100234) or an order number")]
IssuedBy = Annotated[str, typer.Option("--by", help="who decides (recorded on the order's status)")]
Wait = Annotated[float, typer.Option(help="seconds to wait for the order's answer on orders.status (0: don't)")]


def _command(ref: str, kind: str, by: str, wait: float, **fields: Any) -> None:
    from orderflow import commands

    async def go() -> dict[str, object] | None:
        commands.build(kind, "web:-", by, **fields)  # the fields are checked before any server is asked
        await reach.check(KAFKA, STORE)
        key = await commands.order_key(ref)
        cmd = commands.build(kind, key, by, **fields)
        typer.echo(f"sent {kind} {cmd.command_id} for {key}")
        return await commands.send(_bootstrap(), cmd, wait) if wait else None

    try:
        answer = asyncio.run(go())
    except commands.CommandError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if wait and commands.is_refusal(answer):
        typer.echo(commands.describe(answer), err=True)
        raise typer.Exit(1)
    if wait:
        typer.echo(commands.describe(answer))


@order_app.command("cancel")
@needs(KAFKA, STORE, first=False)
def order_cancel(
    ref: OrderRef,
    reason: Annotated[str, typer.Option(help="why (recorded on the order)")] = "customer asked",
    by: IssuedBy = "customer-service",
    wait: Wait = 10,
) -> None:
    """Cancel an order that has not shipped: every reservation and the credit exposure are released."""
    _command(ref, "order.cancel", by, wait, reason=reason)


@order_app.command("review")
@needs(KAFKA, STORE, first=False)
def order_review(
    ref: OrderRef,
    decision: Annotated[str, typer.Argument(help="approve | reject")],
    reason: Annotated[list[str] | None, typer.Option(help="a reason (repeatable)")] = None,
    by: IssuedBy = "reviewer",
    wait: Wait = 10,
) -> None:
    """Decide an order waiting in the manual review queue (`in_review`)."""
    _command(ref, "order.review-decision", by, wait, decision=decision, reasons=reason or [])


@order_app.command("shortage")
@needs(KAFKA, STORE, first=False)
def order_shortage(
    ref: OrderRef,
    choice: Annotated[str, typer.Argument(help="ship_partial | wait | substitute | cancel")],
    remainder: Annotated[
        str | None, typer.Option(help="with ship_partial: cancel (default) or backorder the rest")
    ] = None,
    substitute: Annotated[str | None, typer.Option(help="with substitute: the SKU offered")] = None,
    by: IssuedBy = "customer-service",
    wait: Wait = 10,
) -> None:
    """The customer's choice for an order `awaiting_customer_decision` (the options are on its status)."""
    _command(ref, "order.shortage-decision", by, wait, choice=choice, remainder=remainder, substitute_sku=substitute)


@order_app.command("priority")
@needs(KAFKA, STORE, first=False)
def order_priority(
    ref: OrderRef,
    decision: Annotated[str, typer.Argument(help="approve | deny")],
    by: IssuedBy = "supervisor",
    wait: Wait = 10,
) -> None:
    """Approve or deny the stock reallocation an urgent or VIP order asks for (`awaiting_priority_approval`)."""
    if decision not in ("approve", "deny"):
        typer.echo(f"decision must be approve or deny, not {decision!r}", err=True)
        raise typer.Exit(2)
    _command(ref, "order.priority-approval", by, wait, approved=decision == "approve")


@app.command("bench")
@needs(KAFKA, STORE)
def bench_cmd(
    quick: Annotated[bool, typer.Option("--quick", help="the same search with 10 s steps: under 3 minutes")] = False,
    hot: Annotated[bool, typer.Option("--hot", help="then all orders on 3 SKUs/3 customers vs the mix")] = False,
    growth: Annotated[bool, typer.Option("--growth", help="instead: one reservation/approval vs N open")] = False,
    levels: Annotated[str, typer.Option(help="--growth: open orders per level (default 10,1000,10000)")] = "",
    rates: Annotated[str, typer.Option(help="fixed offered orders/s, comma-separated (default: search)")] = "",
    seconds: Annotated[float, typer.Option(help="seconds per step (default: 10 quick, 60 full)")] = 0,
    shipping: Annotated[bool, typer.Option(help="--quick: also run the simulator (the full run always does)")] = False,
    log_level: Annotated[str, typer.Option(help="the services' LOG_LEVEL (DEBUG adds per-batch timings)")] = "INFO",
    track_orders: Annotated[int, typer.Option(help="instead: time `orderflow track` with this many orders")] = 0,
    gateway: Annotated[
        bool, typer.Option("--gateway", help="instead: orders/s through the HTTP gateway vs straight to Kafka")
    ] = False,
    gateway_orders: Annotated[int, typer.Option(help="--gateway: orders sent each way")] = 2000,
    concurrency: Annotated[int, typer.Option(help="--gateway: HTTP requests in flight")] = 50,
) -> None:
    """Raw Kafka and store limits, then orders/s end to end; tables printed, JSON in bench/results/."""
    from orderflow.dev import bench

    uri = os.environ.get("MONGODB_URI") or stack.env()["MONGODB_URI"]
    if gateway:
        from orderflow.dev import bench_gateway

        bench_gateway.main(_bootstrap(), uri, gateway_orders, concurrency, typer.echo)
        return
    if track_orders:
        from orderflow.dev import bench_track

        bench_track.main(uri, track_orders, typer.echo)
        return
    if hot and growth:
        typer.echo("--hot and --growth are separate runs: give one of them", err=True)
        raise typer.Exit(2)
    numbers: dict[str, tuple[int, ...]] = {}
    for option, text in (("--rates", rates), ("--levels", levels)):
        try:
            numbers[option] = tuple(int(r) for r in text.split(",") if r.strip())
        except ValueError as exc:
            typer.echo(f"bench: {option} takes comma-separated whole numbers, not {text!r}", err=True)
            raise typer.Exit(2) from exc
    rates_given, levels_given = numbers["--rates"], numbers["--levels"]
    try:
        mode = "hot" if hot else "growth" if growth else "throughput"
        plan = bench.make_plan(quick, rates_given, seconds, shipping, log_level.upper(), mode, levels_given)
    except ValueError as exc:
        typer.echo(f"bench: {exc}", err=True)
        raise typer.Exit(2) from exc
    bench.main(_bootstrap(), uri, plan, typer.echo)


@app.command("lag")
@needs(KAFKA)
def lag_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    watch: Annotated[bool, typer.Option(help="refresh every 2 seconds")] = False,
) -> None:
    """Consumer lag per service group, topic and partition, with the age of the oldest unconsumed message."""
    from orderflow import lag

    async def go() -> None:
        async with lag.LagMeter(_bootstrap()) as reader:
            while True:
                rows = await reader.measure()
                if as_json:
                    typer.echo(json.dumps([r.to_dict() for r in rows]))
                else:
                    if watch:
                        typer.echo("\x1b[2J\x1b[H", nl=False)
                    typer.echo(
                        f"{'group':<12}{'topic':<34}{'part':>5}{'committed':>11}{'end':>9}{'lag':>8}{'oldest':>9}"
                    )
                    for r in rows:
                        typer.echo(
                            f"{r.group:<12}{r.topic:<34}{r.partition:>5}{r.committed!s:>11}{r.log_end:>9}{r.lag:>8}"
                            f"{lag.format_age(r.oldest_age_s):>9}"
                        )
                if not watch:
                    return
                await asyncio.sleep(2)

    asyncio.run(go())


@app.command("dashboard")
@needs(KAFKA)
def dashboard_cmd(
    port: Annotated[int, typer.Option(help="HTTP port of the page, /api/state and /metrics")] = 8900,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    stuck: Annotated[
        str, typer.Option(help="status=age pairs past which an order counts as stuck (s, m, h, d)")
    ] = STUCK,
    interval: Annotated[float, typer.Option(help="seconds between lag samples (and page refreshes)")] = 2.0,
) -> None:
    """A live operations page: lag per service and its trend, rates, orders per status, stuck orders, DLQ."""
    from orderflow import dashboard

    try:
        thresholds = dashboard.parse_stuck(stuck)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--stuck") from exc
    typer.echo(f"dashboard on http://{host}:{port}/  (JSON /api/state, Prometheus /metrics)")
    asyncio.run(dashboard.serve(_bootstrap(), host, port, thresholds, interval))


def main() -> None:
    """Console-script entry point."""
    app()
