"""Provision and run the real servers without Docker: Apache Kafka (KRaft) and FerretDB (SQLite).

Kafka runs from Maven Central jars (``deploy/kafka/pom.xml``) on Java 17; FerretDB is embedded in a
tiny Go program (``deploy/ferretdb``). Downloads and builds are cached in :func:`cache_dir`, so a
second start takes seconds; data, pid files and logs live in :func:`state_dir`.

Manual use: ``python -m orderflow.stack up|down|status|reset`` (and ``start|stop|kill <component>``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypedDict

import psutil  # type: ignore[import-untyped,unused-ignore]

Component = Literal["kafka", "ferretdb"]
COMPONENTS: tuple[Component, ...] = ("kafka", "ferretdb")

KAFKA_VERSION = "4.4.0"
# Fixed, valid base64 UUID: the single-node cluster keeps its identity across restarts.
KAFKA_CLUSTER_ID = "zd_TZyT2VD6keLHkQMyI2Q"
KAFKA_HEAP = ("-Xms512m", "-Xmx1g")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"
KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J = DEPLOY_DIR / "kafka" / "log4j2.properties"
FERRETDB_SRC = DEPLOY_DIR / "ferretdb"

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
HEARTBEAT_SECONDS = 5.0

Progress = Callable[[str], None]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StackError(RuntimeError):
    """A server could not be provisioned, started or stopped."""


class ComponentStatus(TypedDict):
    """State of one server as reported by :func:`status`."""

    running: bool
    pid: int | None
    address: str


# --------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """Return the directory for downloads and builds (``$ORDERFLOW_CACHE``, default ~/.cache/orderflow)."""
    return Path(os.environ.get("ORDERFLOW_CACHE", "~/.cache/orderflow")).expanduser()


def state_dir() -> Path:
    """Return the directory for data, pid files and logs (``$ORDERFLOW_HOME``, default <repo>/.orderflow)."""
    return Path(os.environ.get("ORDERFLOW_HOME", str(REPO_ROOT / ".orderflow"))).expanduser()


def data_dir(component: Component) -> Path:
    """Return the data directory of a component."""
    return state_dir() / "data" / component


def log_file(component: Component) -> Path:
    """Return the log file of a component."""
    return state_dir() / "logs" / f"{component}.log"


def pid_file(component: Component) -> Path:
    """Return the pid file of a component."""
    return state_dir() / "run" / f"{component}.pid"


def kafka_port() -> int:
    """Return the Kafka client (PLAINTEXT) port (``$ORDERFLOW_KAFKA_PORT``, default 9092)."""
    return int(os.environ.get("ORDERFLOW_KAFKA_PORT", "9092"))


def mongo_port() -> int:
    """Return the FerretDB (MongoDB wire protocol) port (``$ORDERFLOW_MONGO_PORT``, default 27017)."""
    return int(os.environ.get("ORDERFLOW_MONGO_PORT", "27017"))


def _port(component: Component) -> int:
    return kafka_port() if component == "kafka" else mongo_port()


def address(component: Component) -> str:
    """Return the host:port a component listens on."""
    return f"{HOST}:{_port(component)}"


def env() -> dict[str, str]:
    """Return the environment variables that point clients at the running servers."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": address("kafka"),
        "MONGODB_URI": f"mongodb://{address('ferretdb')}/",
    }


def _check_component(component: str) -> Component:
    if component not in COMPONENTS:
        raise StackError(f"unknown component {component!r}; expected one of {', '.join(COMPONENTS)}")
    return component


# ------------------------------------------------------------------------------------------ helpers


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` was not found on PATH; {why}")
    return path


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _run_streaming(
    cmd: Sequence[str],
    *,
    label: str,
    progress: Progress,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> None:
    """Run a command, echoing its output line by line, with a heartbeat when it is quiet."""
    started = time.monotonic()
    progress(f"[{label}] $ {' '.join(cmd)}")
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env={**os.environ, **(extra_env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(_ANSI.sub("", raw).rstrip())
        lines.put(None)

    threading.Thread(target=pump, name=f"{label}-output", daemon=True).start()
    tail: deque[str] = deque(maxlen=30)
    try:
        while True:
            try:
                line = lines.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                progress(f"[{label}] still working ({time.monotonic() - started:.0f}s elapsed)...")
                continue
            if line is None:
                break
            if line:
                tail.append(line)
                progress(f"[{label}] {line}")
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise StackError(
            f"{label}: command failed with exit code {code}: {' '.join(cmd)}\nlast output:\n" + "\n".join(tail)
        )
    progress(f"[{label}] done in {time.monotonic() - started:.0f}s")


@contextlib.contextmanager
def _lock(component: Component) -> Iterator[None]:
    """Serialize start/stop of one component across processes."""
    path = state_dir() / "run" / f"{component}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(component: Component, lines: int = 25) -> str:
    path = log_file(component)
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# ------------------------------------------------------------------------------- build / download


def kafka_libs_dir() -> Path:
    """Return the directory holding the Kafka jars."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_kafka(progress: Progress | None = None) -> Path:
    """Download the Kafka jars with Maven unless cached; return the libs directory."""
    say = progress or _say
    _require_tool("java", "Kafka needs Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`).")
    libs = kafka_libs_dir()
    marker = libs.parent / ".complete"
    want = _sha256(KAFKA_POM)
    if libs.is_dir() and marker.is_file() and marker.read_text().strip() == want:
        return libs
    mvn = _require_tool("mvn", "Maven is needed once to download the Kafka jars (e.g. `apt-get install maven`).")
    say(f"[kafka] downloading Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
    partial = libs.parent / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _run_streaming(
        [
            mvn,
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-Dkafka.libs.dir={partial}",
        ],
        label="kafka",
        progress=say,
    )
    if not any(partial.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise StackError(f"kafka: Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {partial}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    marker.write_text(want + "\n")
    return libs


def ferretdb_binary() -> Path:
    """Return the path of the FerretDB binary for the current sources (it may not be built yet)."""
    sources = [FERRETDB_SRC / "main.go", FERRETDB_SRC / "go.mod"]
    if (FERRETDB_SRC / "go.sum").is_file():
        sources.append(FERRETDB_SRC / "go.sum")
    return cache_dir() / f"ferretdb-{_sha256(*sources)[:12]}" / "ferretdb"


def ensure_ferretdb(progress: Progress | None = None) -> Path:
    """Build the embedded FerretDB binary with Go unless cached; return its path."""
    say = progress or _say
    binary = ferretdb_binary()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = _require_tool("go", "Go is needed once to build FerretDB (e.g. `apt-get install golang`).")
    say(f"[ferretdb] building FerretDB 1.24.2 (first time only, ~2 min) into {binary}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name("ferretdb.partial")
    _run_streaming(
        [go, "build", "-v", "-trimpath", "-buildvcs=false", "-o", str(partial), "."],
        label="ferretdb",
        progress=say,
        cwd=FERRETDB_SRC,
        extra_env={"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"},
    )
    partial.rename(binary)
    return binary


# -------------------------------------------------------------------------------- process control


def _read_pid(component: Component) -> int | None:
    try:
        return int(pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(component: Component, pid: int) -> bool:
    """Whether pid is a live (non-zombie) process of this component (guards against pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    marker = "kafka.Kafka" if component == "kafka" else "ferretdb"
    return marker in cmdline


def _running_pid(component: Component) -> int | None:
    pid = _read_pid(component)
    if pid is not None and _alive(component, pid):
        return pid
    return None


def _port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _kafka_properties() -> str:
    port = kafka_port()
    controller = port + 1
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir("kafka")),
        "num.partitions": "6",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }
    header = "# Generated by orderflow/stack.py on every start; edit the code, not this file.\n"
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def _kafka_command(libs: Path, *main: str) -> list[str]:
    return [
        _require_tool("java", "Kafka needs Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`)."),
        *KAFKA_HEAP,
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        f"-Dkafka.logs.dir={log_file('kafka').parent}",
        "-cp",
        f"{libs}/*",
        *main,
    ]


def _prepare_kafka(progress: Progress) -> list[str]:
    libs = ensure_kafka(progress)
    data = data_dir("kafka")
    data.mkdir(parents=True, exist_ok=True)
    config = state_dir() / "run" / "kafka.properties"
    config.write_text(_kafka_properties())
    if not (data / "meta.properties").is_file():
        progress(f"[kafka] formatting storage in {data} (cluster id {KAFKA_CLUSTER_ID})")
        with log_file("kafka").open("ab") as log:
            result = subprocess.run(
                _kafka_command(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    KAFKA_CLUSTER_ID,
                    "-c",
                    str(config),
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(
                f"kafka: formatting storage failed (exit {result.returncode}); see {log_file('kafka')}\n"
                + _log_tail("kafka")
            )
    return _kafka_command(libs, "kafka.Kafka", str(config))


def _prepare_ferretdb(progress: Progress) -> list[str]:
    binary = ensure_ferretdb(progress)
    data = data_dir("ferretdb")
    data.mkdir(parents=True, exist_ok=True)
    return [str(binary), "-listen-addr", address("ferretdb"), "-sqlite-url", f"file:{data}/?_txlock=immediate"]


async def _kafka_answers(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _kafka_ready() -> bool:
    # Run in a private thread + event loop so this also works when called from async code.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, _kafka_answers(address("kafka")))
        try:
            future.result(timeout=15)
        except Exception:
            return False
    return True


def _wait_healthy(component: Component, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    port = _port(component)
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            pid_file(component).unlink(missing_ok=True)
            raise StackError(
                f"{component} exited with code {code} during start-up; see {log_file(component)}\n"
                + _log_tail(component)
            )
        if _port_open(port) and (component != "kafka" or _kafka_ready()):
            return
        time.sleep(0.5)
    raise StackError(
        f"{component} did not become healthy on {address(component)} within {timeout:.0f}s "
        f"(pid {proc.pid} left running; `stop` it); see {log_file(component)}\n" + _log_tail(component)
    )


def start(component: str, *, timeout: float = START_TIMEOUT, progress: Progress | None = None) -> None:
    """Start a component in the background and wait until it is healthy; no-op if already running."""
    name = _check_component(component)
    say = progress or _say
    with _lock(name):
        pid = _running_pid(name)
        if pid is not None:
            say(f"[{name}] already running (pid {pid}) on {address(name)}")
            return
        pid_file(name).unlink(missing_ok=True)
        if _port_open(_port(name), timeout=0.5):
            raise StackError(
                f"{name}: port {_port(name)} is already in use by a process this tool did not start; "
                f"stop it or set ORDERFLOW_{'KAFKA' if name == 'kafka' else 'MONGO'}_PORT"
            )
        for sub in ("logs", "run"):
            (state_dir() / sub).mkdir(parents=True, exist_ok=True)
        cmd = _prepare_kafka(say) if name == "kafka" else _prepare_ferretdb(say)
        started = time.monotonic()
        with log_file(name).open("ab") as log:
            log.write(f"\n===== orderflow.stack: starting {name} at {time.ctime()} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=state_dir(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid_file(name).write_text(f"{proc.pid}\n")
        say(f"[{name}] started (pid {proc.pid}); waiting for {address(name)} (log: {log_file(name)})")
        _wait_healthy(name, proc, timeout)
        say(f"[{name}] healthy on {address(name)} after {time.monotonic() - started:.1f}s")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session=True made the server its own process-group leader
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # reap it if we happen to be the parent
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def stop(component: str, *, timeout: float = STOP_TIMEOUT, progress: Progress | None = None) -> None:
    """Stop a component: SIGTERM its process group, SIGKILL after timeout seconds; no-op if stopped."""
    name = _check_component(component)
    say = progress or _say
    with _lock(name):
        pid = _running_pid(name)
        if pid is None:
            pid_file(name).unlink(missing_ok=True)
            return
        say(f"[{name}] stopping (pid {pid})")
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            say(f"[{name}] still running after {timeout:.0f}s; sending SIGKILL")
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        pid_file(name).unlink(missing_ok=True)
        say(f"[{name}] stopped")


def kill(component: str, *, progress: Progress | None = None) -> None:
    """SIGKILL a component's process group at once (crash simulation); no-op if stopped."""
    name = _check_component(component)
    say = progress or _say
    with _lock(name):
        pid = _running_pid(name)
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
            say(f"[{name}] killed (pid {pid})")
        pid_file(name).unlink(missing_ok=True)


def status() -> dict[str, ComponentStatus]:
    """Return running state, pid and address of every component."""
    result: dict[str, ComponentStatus] = {}
    for name in COMPONENTS:
        pid = _running_pid(name)
        result[name] = ComponentStatus(running=pid is not None, pid=pid, address=address(name))
    return result


def up(progress: Progress | None = None) -> dict[str, str]:
    """Build/download if needed, start Kafka and FerretDB, and return the client environment."""
    ensure_kafka(progress)
    ensure_ferretdb(progress)
    for name in COMPONENTS:
        start(name, progress=progress)
    return env()


def down(progress: Progress | None = None) -> None:
    """Stop FerretDB and Kafka."""
    for name in reversed(COMPONENTS):
        stop(name, progress=progress)


def reset(progress: Progress | None = None) -> None:
    """Stop both servers and delete their data."""
    down(progress)
    for name in COMPONENTS:
        shutil.rmtree(data_dir(name), ignore_errors=True)
    (progress or _say)(f"[stack] data deleted under {state_dir() / 'data'}")


# ------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the minimal command line: up, down, status, reset, start/stop/kill <component>."""
    parser = argparse.ArgumentParser(prog="python -m orderflow.stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="download/build if needed, start both servers, print the client env")
    sub.add_parser("down", help="stop both servers")
    sub.add_parser("status", help="show whether the servers run")
    sub.add_parser("reset", help="stop both servers and delete their data")
    for verb in ("start", "stop", "kill"):
        sub.add_parser(verb, help=f"{verb} one server").add_argument("component", choices=COMPONENTS)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            for key, value in up().items():
                print(f"export {key}={value}")
        elif args.command == "down":
            down()
        elif args.command == "reset":
            reset()
        elif args.command == "status":
            for name, state in status().items():
                text = f"running (pid {state['pid']})" if state["running"] else "stopped"
                print(f"{name:9} {state['address']:16} {text}")
        elif args.command == "start":
            start(args.component)
        elif args.command == "stop":
            stop(args.component)
        else:
            kill(args.component)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
