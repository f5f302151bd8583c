"""Run the four services as background processes (one or more replicas each), logs in one place."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from orderflow.dev import jaeger, stack

SERVICES: tuple[str, ...] = ("intake", "review", "inventory", "fulfillment")


def _base() -> Path:
    """Where pid files and logs go: ORDERFLOW_PROCS_DIR (tests give each session its own) or the state dir."""
    given = os.environ.get("ORDERFLOW_PROCS_DIR")
    return Path(given) if given else stack.state_dir()


def _run_dir() -> Path:
    path = _base() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file(service: str, replica: int) -> Path:
    return _run_dir() / f"{service}-{replica}.pid"


def log_path(service: str, replica: int = 1) -> Path:
    """Where a service replica writes its log."""
    logs = _base() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{service}-{replica}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def pid_of(service: str, replica: int = 1) -> int | None:
    """The pid of a running replica, or None."""
    path = _pid_file(service, replica)
    if not path.exists():
        return None
    pid = int(path.read_text())
    return pid if _alive(pid) else None


def _port_file(service: str, replica: int) -> Path:
    return _run_dir() / f"{service}-{replica}.port"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def pick_health_port(service: str, replica: int) -> int:
    """A replica's own health/metrics port: HEALTH_BASE (ORDERFLOW_HEALTH_BASE, default 8100) + 10 x the
    service's place + the replica (intake-1 8101, review-1 8111, inventory-1 8121, fulfillment-1 8131), or a
    free port when that one is taken (another system on the machine)."""
    base = int(os.environ.get("ORDERFLOW_HEALTH_BASE", "8100"))
    preferred = base + 10 * SERVICES.index(service) + replica
    return preferred if replica < 10 and _free(preferred) else stack.unused_port()


def health_port(service: str, replica: int = 1) -> int | None:
    """The health/metrics port the replica was started with (None: not started here)."""
    path = _port_file(service, replica)
    return int(path.read_text()) if path.exists() else None


def start(service: str, replica: int = 1, env: dict[str, str] | None = None) -> int:
    """Start one replica in the background (no-op when it runs) with its own health/metrics port (the
    caller's `<SERVICE>_HEALTH_PORT` in `env` wins); returns its pid."""
    running = pid_of(service, replica)
    if running:
        return running
    variable = f"{service.upper()}_HEALTH_PORT"
    port = int((env or {}).get(variable) or pick_health_port(service, replica))
    _port_file(service, replica).write_text(str(port))
    with open(log_path(service, replica), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}.app"],
            cwd=stack.REPO_ROOT,
            env={
                **os.environ,
                **stack.env(),
                **(env or {}),
                variable: str(port),
                **stack.service_env(service),
                **jaeger.service_env(service),  # OTLP to the local Jaeger while `stack up --tracing` runs it
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _pid_file(service, replica).write_text(str(proc.pid))
    return proc.pid


def stop(service: str, replica: int = 1, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop one replica: SIGTERM lets it finish its batch and commit; SIGKILL after `timeout`."""
    pid = pid_of(service, replica)
    if pid is not None:
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    _pid_file(service, replica).unlink(missing_ok=True)
    _port_file(service, replica).unlink(missing_ok=True)


def kill(service: str, replica: int = 1) -> None:
    """SIGKILL one replica at once (fault injection)."""
    stop(service, replica, signal.SIGKILL, timeout=5.0)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def replicas(service: str) -> list[int]:
    """The replica numbers with a live process."""
    return sorted(
        int(p.stem.rsplit("-", 1)[1])
        for p in _run_dir().glob(f"{service}-*.pid")
        if pid_of(service, int(p.stem.rsplit("-", 1)[1]))
    )


def up(count: int = 1, env: dict[str, str] | None = None) -> dict[str, list[int]]:
    """Start `count` replicas of every service."""
    return {s: [start(s, r, env) for r in range(1, count + 1)] for s in SERVICES}


def down() -> None:
    """Stop every replica of every service."""
    for s in SERVICES:
        for r in replicas(s):
            stop(s, r)


def crashed() -> list[tuple[str, int]]:
    """Replicas started here whose process is gone although nobody stopped them (pid file left behind)."""
    out = []
    for s in SERVICES:
        for path in sorted(_run_dir().glob(f"{s}-*.pid")):
            replica = int(path.stem.rsplit("-", 1)[1])
            if pid_of(s, replica) is None:
                out.append((s, replica))
    return out


def log_tail(service: str, replica: int = 1, lines: int = 20) -> str:
    """The last `lines` lines of a replica's log (empty when it has none)."""
    path = log_path(service, replica)
    if not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])
