"""A local Jaeger for `orderflow stack up --tracing` (issue 14): the all-in-one binary of
github.com/jaegertracing/jaeger v1.75.0, built from the Go module proxy like FerretDB and cached in
``~/.cache/orderflow`` (``$ORDERFLOW_CACHE``), run in the background with its UI and OTLP/HTTP receiver on
localhost. While it runs, `orderflow services up` points every service's OTLP exporter at it.

The module's go.mod has `replace` directives, so `go install module@version` refuses it: its source is fetched
with `go mod download` and built in place (`go build ./cmd/all-in-one`).
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from orderflow.dev import stack

MODULE = "github.com/jaegertracing/jaeger"
VERSION = "v1.75.0"
START_TIMEOUT = 60.0
_OTHER_PORTS = (
    ("collector.otlp.grpc", 4317),
    ("collector.grpc-server", 14250),
    ("collector.http-server", 14268),
    ("admin.http", 14269),
    ("query.grpc-server", 16685),
)


def ui_port() -> int:
    """Jaeger's UI and query API (``$ORDERFLOW_JAEGER_UI_PORT``, default 16686)."""
    return int(os.environ.get("ORDERFLOW_JAEGER_UI_PORT", "16686"))


def otlp_port() -> int:
    """Jaeger's OTLP/HTTP receiver (``$ORDERFLOW_JAEGER_OTLP_PORT``, default 4318)."""
    return int(os.environ.get("ORDERFLOW_JAEGER_OTLP_PORT", "4318"))


def ui_url() -> str:
    """Where the traces are browsed."""
    return f"http://{stack.HOST}:{ui_port()}/"


def otlp_url() -> str:
    """The endpoint the services export to (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    return f"http://{stack.HOST}:{otlp_port()}"


def binary() -> Path:
    """The cached all-in-one binary (it may not be built yet)."""
    return stack.cache_dir() / f"jaeger-{VERSION}" / "jaeger-all-in-one"


def pid_file() -> Path:
    """Jaeger's pid file in the stack's state directory."""
    return stack.state_dir() / "run" / "jaeger.pid"


def log_file() -> Path:
    """Jaeger's log in the stack's state directory."""
    return stack.state_dir() / "logs" / "jaeger.log"


def ensure(progress: stack.Progress | None = None) -> Path:
    """Build Jaeger's all-in-one from the Go module proxy unless cached; returns the binary. A refusal or a build
    error is a StackError with Go's own words."""
    say = progress or stack._say
    target = binary()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = stack._require_tool("go", "Go is needed once to build Jaeger (e.g. `apt-get install golang`).")
    say(f"[jaeger] building Jaeger {VERSION} all-in-one (first time only, several minutes) into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        module_dir = Path(json.loads(fetched.stdout)["Dir"])
    except (ValueError, KeyError):
        raise stack.StackError(
            f"jaeger: the Go module proxy did not serve {MODULE}@{VERSION}: {(fetched.stdout + fetched.stderr).strip()}"
        ) from None
    source = target.parent / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(module_dir, source, copy_function=shutil.copyfile)  # the module cache is read-only
    partial = target.with_name("jaeger-all-in-one.partial")
    try:
        stack._run_streaming(
            [go, "build", "-v", "-trimpath", "-buildvcs=false", "-o", str(partial), "./cmd/all-in-one"],
            label="jaeger",
            progress=say,
            cwd=source,
            extra_env={"GOFLAGS": "-mod=mod"},
        )
    finally:
        shutil.rmtree(source, ignore_errors=True)
    partial.rename(target)
    return target


def _alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and any(
            Path(arg).name == binary().name for arg in proc.cmdline()[:1]
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def running_pid() -> int | None:
    """Our Jaeger's pid when it runs."""
    try:
        pid = int(pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(progress: stack.Progress | None = None) -> str:
    """Build if needed and start Jaeger in the background (no-op when running); returns its UI URL."""
    say = progress or stack._say
    if (pid := running_pid()) is not None:
        say(f"[jaeger] already running (pid {pid}); UI {ui_url()}")
        return ui_url()
    target = ensure(say)
    for port, variable in ((ui_port(), "ORDERFLOW_JAEGER_UI_PORT"), (otlp_port(), "ORDERFLOW_JAEGER_OTLP_PORT")):
        if stack._port_open(port, timeout=0.5):
            raise stack.StackError(
                f"jaeger: port {port} is in use by a process this tool did not start; set {variable}"
            )
    for sub in ("logs", "run"):
        (stack.state_dir() / sub).mkdir(parents=True, exist_ok=True)
    cmd = [
        str(target),
        f"--query.http-server.host-port={stack.HOST}:{ui_port()}",
        f"--collector.otlp.http.host-port={stack.HOST}:{otlp_port()}",
        # its other listeners stay on localhost too (defaults: 4317, 14250, 14268, 14269, 16685)
        *(f"--{flag}.host-port={stack.HOST}:{port}" for flag, port in _OTHER_PORTS),
    ]
    with log_file().open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=stack.state_dir(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file().write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not (stack._port_open(ui_port()) and stack._port_open(otlp_port())):
        if proc.poll() is not None:
            raise stack.StackError(f"jaeger exited with {proc.returncode} at start; see {log_file()}")
        if time.monotonic() > deadline:
            raise stack.StackError(f"jaeger: not listening on {ui_port()} and {otlp_port()} after {START_TIMEOUT:.0f}s")
        time.sleep(0.3)
    say(f"[jaeger] healthy (pid {proc.pid}); UI {ui_url()}, OTLP/HTTP {otlp_url()}")
    return ui_url()


def stop(progress: stack.Progress | None = None) -> None:
    """Stop our Jaeger if it runs (its traces are in memory and go with it)."""
    pid = running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (progress or stack._say)(f"[jaeger] stopped (pid {pid})")
    pid_file().unlink(missing_ok=True)


def service_env(service: str) -> dict[str, str]:
    """OTLP export to the local Jaeger for a service process while it runs, unless the caller set OTEL_* itself."""
    if running_pid() is None or any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED")):
        return {}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(), "OTEL_SERVICE_NAME": service}


def main() -> None:
    """`python -m orderflow.dev.jaeger` (make demo): print the Jaeger UI's URL when tracing is on, else nothing."""
    if running_pid() is not None:
        print(f"==> traces of every order in Jaeger: {ui_url()} (service intake, review, inventory or fulfillment)")


if __name__ == "__main__":
    main()
