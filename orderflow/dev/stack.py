"""Provision and run the real servers without Docker: PostgreSQL, Apache Kafka (KRaft) and FerretDB.

Kafka runs from Maven Central jars (``deploy/kafka/pom.xml``) on Java 17; FerretDB is embedded in a
tiny Go program (``deploy/ferretdb``) and stores its data in PostgreSQL (Debian's packaged binaries,
``/usr/lib/postgresql/<major>/bin``; a private cluster, not the system one). ``ORDERFLOW_FERRETDB_BACKEND=sqlite``
selects FerretDB's SQLite backend instead (no PostgreSQL; it deadlocks on large bulk updates).
Downloads and builds are cached in :func:`cache_dir`, so a second start takes seconds; data, pid
files and logs live in :func:`state_dir`. ``ORDERFLOW_PROFILE=test`` selects a second, independent set of
servers (own state directory and ports, :data:`PROFILES`): the test suites run there, never on the demo's.

Manual use: ``python -m orderflow.dev.stack up|down|status|reset`` (and ``start|stop|kill <component>``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import pwd
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

import psutil  # type: ignore[import-untyped,unused-ignore]

from orderflow import security

Component = Literal["postgres", "kafka", "ferretdb"]
# Start order; stop order is the reverse (FerretDB needs PostgreSQL).
COMPONENTS: tuple[Component, ...] = ("postgres", "kafka", "ferretdb")

KAFKA_VERSION = "4.4.0"
# Fixed, valid base64 UUID: the single-node cluster keeps its identity across restarts.
KAFKA_CLUSTER_ID = "zd_TZyT2VD6keLHkQMyI2Q"
KAFKA_HEAP = ("-Xms512m", "-Xmx1g")

PG_OS_USER = "postgres"  # the OS user the server runs as when we are root (created by Debian's package)
PG_SUPERUSER = "postgres"  # the database superuser created by initdb
PG_DATABASE = "ferretdb"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_PREFERRED_MAJOR = 15
# Development/test server only: durability is traded for speed (a crash of the *machine* may lose
# or corrupt data; a crash of the server process does not lose committed data with fsync=off alone).
PG_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "200",
    "logging_collector": "off",  # log to stderr, i.e. our log file
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] ",
}

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J = DEPLOY_DIR / "kafka" / "log4j2.properties"
FERRETDB_SRC = DEPLOY_DIR / "ferretdb"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"

# Fixes for FerretDB 1.24.2 (the last 1.x release): unified diffs applied in name order with `patch -p1` at
# build time to a copy of the module in the build cache (used via `go build -modfile` + `replace`; the Go
# module cache and deploy/ferretdb/go.mod stay pristine). Each file's header says what it fixes and why.
FERRETDB_PATCH_DIR = FERRETDB_SRC / "patches"
# Go's JSON v2 behind encoding/json (v1 semantics kept): FerretDB's SQLite backend stores every document as JSON
# and decodes it on every read and update; v2 decodes faster (docs/adr/0007, "Update: JSON v2").
FERRETDB_GOEXPERIMENT = "jsonv2"

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


@dataclass(frozen=True)
class Profile:
    """One set of local servers: its state directory (under the repository) and its ports."""

    home: str
    kafka_port: int  # the KRaft controller listens on the next port
    mongo_port: int
    postgres_port: int


# `default` serves `make demo` and `orderflow services`; `test` serves the test suites (tests/conftest.py), so
# their messages, consumer groups and databases never reach the demo's servers.
PROFILES: dict[str, Profile] = {
    "default": Profile(".orderflow", 9092, 27017, 5433),
    "test": Profile(".orderflow-test", 19092, 27027, 5434),
}


def profile() -> Profile:
    """Return the servers' profile (``$ORDERFLOW_PROFILE``: ``default`` or ``test``); the ORDERFLOW_HOME and
    ORDERFLOW_*_PORT variables still override its directory and ports one by one."""
    name = os.environ.get("ORDERFLOW_PROFILE", "").strip().lower() or "default"
    if name not in PROFILES:
        raise StackError(f"ORDERFLOW_PROFILE={name!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[name]


def state_dir() -> Path:
    """Return the directory for data, pid files and logs (``$ORDERFLOW_HOME``, default <repo>/<profile's home>)."""
    return Path(os.environ.get("ORDERFLOW_HOME", str(REPO_ROOT / profile().home))).expanduser().absolute()


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
    """Return the Kafka client (PLAINTEXT) port (``$ORDERFLOW_KAFKA_PORT``, else the profile's: 9092, tests 19092)."""
    return int(os.environ.get("ORDERFLOW_KAFKA_PORT") or profile().kafka_port)


def mongo_port() -> int:
    """Return the FerretDB (MongoDB wire protocol) port (``$ORDERFLOW_MONGO_PORT``, else 27017, tests 27027)."""
    return int(os.environ.get("ORDERFLOW_MONGO_PORT") or profile().mongo_port)


def postgres_port() -> int:
    """Return the PostgreSQL port (``$ORDERFLOW_PG_PORT``, else 5433, tests 5434: a system cluster on 5432 is left
    alone)."""
    return int(os.environ.get("ORDERFLOW_PG_PORT") or profile().postgres_port)


def ferretdb_backend() -> Literal["postgresql", "sqlite"]:
    """Return FerretDB's backend (``$ORDERFLOW_FERRETDB_BACKEND``: ``sqlite`` or ``postgresql``); by default SQLite
    (measured cheaper per order, ADR 0007), PostgreSQL in secure mode (it checks the store users' passwords)."""
    value = os.environ.get("ORDERFLOW_FERRETDB_BACKEND", "").strip().lower()
    if not value:
        return "postgresql" if secure() else "sqlite"
    if value in ("postgresql", "postgres", "pg"):
        return "postgresql"
    if value == "sqlite":
        return "sqlite"
    raise StackError(f"ORDERFLOW_FERRETDB_BACKEND={value!r}; expected postgresql or sqlite")


def secure() -> bool:
    """Whether the stack runs in secure mode: ``$ORDERFLOW_SECURE`` set, or a state dir that was started secure."""
    wanted = os.environ.get("ORDERFLOW_SECURE", "").strip().lower() in ("1", "true", "yes", "on")
    return wanted or _secure_marker().is_file()


def _secure_marker() -> Path:
    return state_dir() / "secure"


def postgres_url() -> str:
    """Return the URL FerretDB uses to reach PostgreSQL (trust auth, local dev server; in secure mode no
    user: FerretDB connects with each client's own credentials, which PostgreSQL checks)."""
    if secure():
        return f"postgres://{HOST}:{postgres_port()}/{PG_DATABASE}"
    return f"postgres://{PG_SUPERUSER}@{HOST}:{postgres_port()}/{PG_DATABASE}"


_PORT_ENV: dict[Component, str] = {
    "postgres": "ORDERFLOW_PG_PORT",
    "kafka": "ORDERFLOW_KAFKA_PORT",
    "ferretdb": "ORDERFLOW_MONGO_PORT",
}


def _port(component: Component) -> int:
    if component == "postgres":
        return postgres_port()
    return kafka_port() if component == "kafka" else mongo_port()


def address(component: Component) -> str:
    """Return the host:port a component listens on."""
    return f"{HOST}:{_port(component)}"


def env() -> dict[str, str]:
    """Return the environment variables that point clients at the running servers (in secure mode: as the
    admin principal and the store user, with password files, never passwords)."""
    if secure():
        m = security.material(state_dir())
        return {
            "KAFKA_BOOTSTRAP_SERVERS": address("kafka"),
            **security.kafka_env(m, security.ADMIN),
            **security.mongo_env(m, address("ferretdb")),
        }
    return {
        "KAFKA_BOOTSTRAP_SERVERS": address("kafka"),
        "MONGODB_URI": f"mongodb://{address('ferretdb')}/",
    }


def service_env(service: str) -> dict[str, str]:
    """A service process's own credentials when the local stack runs secure (nothing otherwise): it
    authenticates to Kafka as its own principal, whatever the caller's environment says."""
    if not secure():
        return {}
    return security.kafka_env(security.material(state_dir()), service)


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


class _UserKwargs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _user_kwargs(user: str | None) -> _UserKwargs:
    """Popen arguments that drop root privileges to ``user`` (none when user is None)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _user_env(user: str | None) -> dict[str, str]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}


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
    as_user: str | None = None,
) -> None:
    """Run a command, echoing its output line by line, with a heartbeat when it is quiet.

    ``as_user`` (root only) runs it as that OS user, like ``runuser -u <user> --``.
    """
    started = time.monotonic()
    progress(f"[{label}] $ {' '.join(cmd)}" + (f"  (as {as_user})" if as_user else ""))
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env={**os.environ, **(extra_env or {}), **_user_env(as_user)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        **_user_kwargs(as_user),
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


def ferretdb_patches() -> list[Path]:
    """The FerretDB patch files, in the order they apply (by name)."""
    return sorted(FERRETDB_PATCH_DIR.glob("*.patch"))


def ferretdb_binary() -> Path:
    """Return the path of the FerretDB binary for the current sources and patches (it may not be built yet)."""
    sources = [FERRETDB_SRC / "main.go", FERRETDB_SRC / "go.mod"]
    if (FERRETDB_SRC / "go.sum").is_file():
        sources.append(FERRETDB_SRC / "go.sum")
    built = _sha256(*sources) + _sha256(*ferretdb_patches()) + FERRETDB_GOEXPERIMENT
    digest = hashlib.sha256(built.encode()).hexdigest()
    return cache_dir() / f"ferretdb-{digest[:12]}" / "ferretdb"


def apply_ferretdb_patches(module_dir: Path, patched_dir: Path) -> int:
    """Copy FerretDB's module to `patched_dir` and apply every patch file in order, exactly (no fuzz);
    a patch that does not apply is a StackError naming it. Returns the number of patches applied."""
    patches = ferretdb_patches()
    if not patches:
        raise StackError(f"ferretdb: no *.patch files in {FERRETDB_PATCH_DIR}; FerretDB 1.24.2 needs its fixes")
    patch_tool = _require_tool("patch", "GNU patch applies FerretDB's fixes (e.g. `apt-get install patch`).")
    shutil.rmtree(patched_dir, ignore_errors=True)
    # copyfile, not copy2: the module cache is read-only and the copy must be writable/removable.
    shutil.copytree(module_dir, patched_dir, copy_function=shutil.copyfile)
    for root, _dirs, _files in os.walk(patched_dir):
        os.chmod(root, 0o755)
    for patch_file in patches:
        applied = subprocess.run(
            [patch_tool, "-p1", "--batch", "--forward", "--fuzz=0", "-d", str(patched_dir), "-i", str(patch_file)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if applied.returncode != 0:
            raise StackError(
                f"ferretdb: {patch_file.name} does not apply to {module_dir}:\n"
                f"{(applied.stdout + applied.stderr).strip()}"
            )
    return len(patches)


def _go(go: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `go args` in FerretDB's source directory in module mode, its output captured (the caller checks it)."""
    return subprocess.run(
        [go, *args],
        cwd=FERRETDB_SRC,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def _ferretdb_patched_modfile(go: str, workdir: Path, progress: Progress) -> Path:
    """Copy FerretDB's module, apply the patch files, and return a go.mod that `replace`s it with the copy."""
    _run_streaming(
        [go, "mod", "download", FERRETDB_MODULE],
        label="ferretdb",
        progress=progress,
        cwd=FERRETDB_SRC,
        extra_env={"GOFLAGS": "-mod=mod"},
    )
    listed = _go(go, "list", "-m", "-f", "{{.Dir}}", FERRETDB_MODULE)
    module_dir = Path(listed.stdout.strip())
    if listed.returncode != 0 or not listed.stdout.strip() or not module_dir.is_dir():
        raise StackError(f"ferretdb: cannot locate {FERRETDB_MODULE} sources: {listed.stderr.strip()}")
    patched_dir = workdir / "FerretDB"
    count = apply_ferretdb_patches(module_dir, patched_dir)
    progress(f"[ferretdb] applied {count} patches to FerretDB in {patched_dir}")
    modfile = workdir / "go.mod"
    shutil.copyfile(FERRETDB_SRC / "go.mod", modfile)
    if (FERRETDB_SRC / "go.sum").is_file():
        shutil.copyfile(FERRETDB_SRC / "go.sum", workdir / "go.sum")
    edit = _go(go, "mod", "edit", f"-modfile={modfile}", f"-replace={FERRETDB_MODULE}={patched_dir}")
    if edit.returncode != 0:
        raise StackError(f"ferretdb: `go mod edit -replace` failed: {edit.stderr.strip()}")
    return modfile


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
    modfile = _ferretdb_patched_modfile(go, binary.parent, say)
    _run_streaming(
        [go, "build", "-v", "-trimpath", "-buildvcs=false", f"-modfile={modfile}", "-o", str(partial), "."],
        label="ferretdb",
        progress=say,
        cwd=FERRETDB_SRC,
        extra_env={"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GOEXPERIMENT": FERRETDB_GOEXPERIMENT},
    )
    partial.rename(binary)
    return binary


def _pg_bin_dirs() -> dict[int, Path]:
    """Installed PostgreSQL server binaries by major version (Debian layout)."""
    found: dict[int, Path] = {}
    for bindir in Path("/").glob(PG_BIN_GLOB.lstrip("/")):
        major = bindir.parent.name
        if major.isdigit() and (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            found[int(major)] = bindir
    return found


def _pg_data_major() -> int | None:
    try:
        return int((data_dir("postgres") / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


def _pg_pick(found: dict[int, Path]) -> Path | None:
    if not found:
        return None
    existing = _pg_data_major()
    if existing is not None:
        if existing not in found:
            raise StackError(
                f"postgres: the data directory {data_dir('postgres')} was created by PostgreSQL {existing}, "
                f"but only {', '.join(map(str, sorted(found)))} is installed; `reset` the stack to re-create it"
            )
        return found[existing]
    return found.get(PG_PREFERRED_MAJOR) or found[max(found)]


def _pg_os_user() -> str | None:
    """The OS user to run PostgreSQL as: ``postgres`` when we are root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise StackError(
            f"postgres: running as root, but the `{PG_OS_USER}` OS user does not exist "
            "(Debian's `postgresql` package creates it: `apt-get install postgresql`)"
        ) from None
    return PG_OS_USER


def ensure_postgres(progress: Progress | None = None) -> Path:
    """Find PostgreSQL's server binaries, installing Debian's ``postgresql`` if missing; return the bin dir."""
    say = progress or _say
    bindir = _pg_pick(_pg_bin_dirs())
    if bindir is not None:
        return bindir
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise StackError(
            f"postgres: no PostgreSQL server binaries in {PG_BIN_GLOB} and cannot install them "
            f"({'not root' if os.geteuid() != 0 else 'no apt-get'}); install them, e.g. "
            "`sudo apt-get install postgresql`, or set ORDERFLOW_FERRETDB_BACKEND=sqlite"
        )
    say("[postgres] PostgreSQL is not installed; installing Debian's `postgresql` package (first time only)")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run_streaming([apt, "update"], label="postgres", progress=say, extra_env=apt_env)
    _run_streaming([apt, "install", "-y", "postgresql"], label="postgres", progress=say, extra_env=apt_env)
    bindir = _pg_pick(_pg_bin_dirs())
    if bindir is None:
        raise StackError(f"postgres: `apt-get install postgresql` finished but no server binaries in {PG_BIN_GLOB}")
    return bindir


def _pg_socket_dir() -> Path:
    """Directory of PostgreSQL's Unix socket: in the state dir unless that path is too long for a socket."""
    candidate = state_dir() / "run" / "postgres-socket"
    if len(f"{candidate}/.s.PGSQL.{postgres_port()}") < 100:
        return candidate
    return Path("/tmp")


def _chown_to(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _let_traverse(path: Path, user: str | None, progress: Progress) -> None:
    """Let `user` reach `path`: add search permission for others (x, nothing readable) to every directory on
    the way that lacks it, e.g. a checkout under `mktemp -d` (0700) when we are root and PostgreSQL is not."""
    if user is None:
        return
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, mode | stat.S_IXOTH)
            progress(f"[postgres] {directory}: added search permission (o+x) so the {user} user reaches its data")


def _prepare_postgres(progress: Progress) -> tuple[list[str], str | None]:
    """Initialise the cluster if needed; return the server command and the OS user to run it as."""
    bindir = ensure_postgres(progress)
    user = _pg_os_user()
    data = data_dir("postgres")
    data.parent.mkdir(parents=True, exist_ok=True)
    _let_traverse(data.parent, user, progress)
    if not (data / "PG_VERSION").is_file():
        if data.exists() and any(data.iterdir()):
            raise StackError(f"postgres: {data} is not empty but holds no cluster (no PG_VERSION); `reset` the stack")
        partial = data.with_name("postgres.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        _chown_to(partial, user)
        progress(f"[postgres] initialising a new cluster in {data} ({bindir.parent.name})")
        _run_streaming(
            [
                str(bindir / "initdb"),
                "-D",
                str(partial),
                f"--username={PG_SUPERUSER}",
                "--auth=trust",  # development only: no passwords on 127.0.0.1 / the private socket
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            label="postgres",
            progress=progress,
            cwd=data.parent,
            as_user=user,
        )
        shutil.rmtree(data, ignore_errors=True)
        partial.rename(data)
    # A SIGKILLed postmaster leaves postmaster.pid behind; drop it unless its pid is a live postgres.
    lock = data / "postmaster.pid"
    if lock.is_file():
        try:
            stale_pid = int(lock.read_text().splitlines()[0])
            stale = not _alive("postgres", stale_pid)
        except (OSError, ValueError, IndexError):
            stale = True
        if stale:
            lock.unlink(missing_ok=True)
    socket_dir = _pg_socket_dir()
    if socket_dir != Path("/tmp"):
        socket_dir.mkdir(parents=True, exist_ok=True)
        _chown_to(socket_dir, user)
        _let_traverse(socket_dir.parent, user, progress)
    cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(postgres_port()), "-k", str(socket_dir)]
    for key, value in PG_SETTINGS.items():
        cmd += ["-c", f"{key}={value}"]
    if secure():
        hba = state_dir() / "run" / "pg_hba.conf"
        hba.write_text(security.pg_hba())
        cmd += ["-c", f"hba_file={hba}"]
    return cmd, user


def _pg_tool(name: str) -> str:
    bindir = _pg_pick(_pg_bin_dirs())
    if bindir is None:
        raise StackError(f"postgres: no PostgreSQL binaries in {PG_BIN_GLOB}")
    return str(bindir / name)


def _pg_conn_args(database: str = "postgres") -> list[str]:
    host = str(_pg_socket_dir()) if secure() else HOST  # in secure mode only the private socket is trusted
    return ["-h", host, "-p", str(postgres_port()), "-U", PG_SUPERUSER, "-d", database]


def _postgres_ready() -> bool:
    result = subprocess.run(
        [_pg_tool("pg_isready"), "-q", "-t", "3", *_pg_conn_args()],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _psql(sql: str) -> str:
    result = subprocess.run(
        [_pg_tool("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", *_pg_conn_args(), "-c", sql],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise StackError(f"postgres: psql failed (exit {result.returncode}) on {sql!r}: {result.stderr.strip()}")
    return result.stdout.strip()


def _ensure_pg_database(progress: Progress) -> None:
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'") != "1":
        progress(f"[postgres] creating database {PG_DATABASE}")
        _psql(f'CREATE DATABASE "{PG_DATABASE}"')
    if secure():
        verifier = security.pg_scram_verifier(security.password(security.material(state_dir()).mongo_password_file))
        user = security.MONGO_USER
        if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'") != "1":
            progress(f"[postgres] creating login role {user} (the store user of secure mode)")
            _psql(f'CREATE ROLE "{user}"')
        _psql(f"ALTER ROLE \"{user}\" WITH LOGIN PASSWORD '{verifier}'")  # a SCRAM verifier, not the password
        _psql(f'ALTER DATABASE "{PG_DATABASE}" OWNER TO "{user}"')


# -------------------------------------------------------------------------------- process control


def _read_pid(component: Component) -> int | None:
    try:
        return int(pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid(component: Component, pid: int) -> None:
    """Record a component's pid (under its `_lock`), atomically: a reader without the lock sees the old or the new."""
    path = pid_file(component)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(f"{pid}\n")
    partial.replace(path)


def _same_path(given: str, ours: Path) -> bool:
    return os.path.realpath(given) == os.path.realpath(ours)


def _alive(component: Component, pid: int) -> bool:
    """Whether pid is a live (non-zombie) process of this component (guards against pid reuse)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        argv = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if not argv:
        return False
    if component == "kafka":
        return "kafka.Kafka" in argv
    if component == "postgres":  # the postmaster keeps its argv; backends retitle themselves "postgres: ..."
        given = argv[argv.index("-D") + 1] if "-D" in argv[:-1] else None
        return Path(argv[0]).name == "postgres" and given is not None and _same_path(given, data_dir("postgres"))
    return Path(argv[0]).name == "ferretdb"


def _postmaster_pid() -> int | None:
    """The postmaster of our data directory as its own postmaster.pid names it, when that one is alive."""
    try:
        pid = int((data_dir("postgres") / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive("postgres", pid) else None


def _started_here(component: Component, argv: list[str]) -> bool:
    """Whether a Kafka or FerretDB command line is the one this state directory runs (our Kafka's properties file;
    FerretDB on our address naming our data directory)."""
    if component == "kafka":
        ours = state_dir() / "run" / "kafka.properties"
        return any(_same_path(arg, ours) for arg in argv if arg.endswith("kafka.properties"))
    return address("ferretdb") in argv and ferretdb_sqlite_url(data_dir("ferretdb")) in argv


def _own_pid(component: Component) -> int | None:
    """Our live server of this component found without its pid file: postgres by its data directory's
    postmaster.pid, Kafka and FerretDB by their command lines."""
    if component == "postgres":
        return _postmaster_pid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if _started_here(component, proc.info["cmdline"] or []) and _alive(component, proc.info["pid"]):
            return int(proc.info["pid"])
    return None


def _running_pid(component: Component) -> int | None:
    """The live server of this component: the one its pid file names, else the one found by `_own_pid` (a start
    or stop racing another one, or one interrupted, may have lost its pid file)."""
    pid = _read_pid(component)
    if pid is not None and _alive(component, pid):
        return pid
    return _own_pid(component)


def _holder(port: int) -> str:
    """The process listening on a port, as shown in the error saying it is taken ('' when it cannot be seen)."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return f" (pid {conn.pid}: {' '.join(psutil.Process(conn.pid).cmdline())[:200]})"
    return ""


def _port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def unused_port(span: int = 1) -> int:
    """A port (and the `span - 1` after it) nobody holds, below the kernel's ephemeral range so that no
    outgoing connection can take it between this check and the server's bind."""
    low, high = 20000, 32000
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, ephemeral_low - span)
    for _ in range(200):
        port = random.randrange(low, high)
        if all(_bindable(p) for p in range(port, port + span)):
            return port
    raise RuntimeError(f"no {span} free consecutive port(s) between {low} and {high}")


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
    if secure():
        props.update(security.kafka_properties(security.material(state_dir()), HOST, port, controller))
    header = "# Generated by orderflow/dev/stack.py on every start; edit the code, not this file.\n"
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
    config.touch(mode=0o600)  # secure mode writes the admin's password into it
    config.write_text(_kafka_properties())
    scram: list[str] = []
    if secure():
        scram = security.scram_format_args(security.material(state_dir()))
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
                    *scram,
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
    cmd = [str(binary), "-listen-addr", address("ferretdb")]
    if secure():
        m = security.material(state_dir())
        tls = ["-tls-listen-addr", address("ferretdb"), "-tls-cert-file", str(m.server_cert)]
        cmd = [str(binary), "-listen-addr", "", *tls, "-tls-key-file", str(m.server_key)]
    data_dir("ferretdb").mkdir(parents=True, exist_ok=True)
    # -sqlite-url also with PostgreSQL (unused there): it names this state directory, so that `stack down` in
    # another checkout, whose FerretDB has the same address and PostgreSQL URL, never takes ours for its own
    cmd += ["-sqlite-url", ferretdb_sqlite_url(data_dir("ferretdb"))]
    if pprof := os.environ.get("ORDERFLOW_FERRETDB_PPROF", "").strip():
        cmd += ["-pprof-addr", pprof]  # e.g. 127.0.0.1:6060: `go tool pprof http://…/debug/pprof/profile`
    if ferretdb_backend() == "sqlite":
        return [*cmd, "-handler", "sqlite"]
    return [*cmd, "-handler", "postgresql", "-postgresql-url", postgres_url()]


def ferretdb_sqlite_url(directory: Path) -> str:
    """FerretDB's SQLite URL for databases in `directory`: WAL with `synchronous(normal)`, a 16 MB page cache per
    connection, writers taking the lock up front (ADR 0007)."""
    return f"file:{directory}/?_txlock=immediate&_pragma=synchronous(normal)&_pragma=cache_size(-16384)"


async def _kafka_answers(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

    auth: dict[str, object] = {}
    if secure():
        from services.runtime.kafka import client_kwargs

        auth = client_kwargs(security.kafka_auth(security.material(state_dir()), security.ADMIN))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **auth)
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


def _wait_healthy(component: Component, pid: int, exit_code: Callable[[], int | None], timeout: float) -> None:
    """Wait until the server answers; StackError when it exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    port = _port(component)
    while time.monotonic() < deadline:
        code = exit_code()
        if code is not None:
            pid_file(component).unlink(missing_ok=True)
            raise StackError(
                f"{component} exited with code {code} during start-up; see {log_file(component)}\n"
                + _log_tail(component)
            )
        if _port_open(port) and (
            (component == "kafka" and _kafka_ready())
            or (component == "postgres" and _postgres_ready())
            or component == "ferretdb"
        ):
            return
        time.sleep(0.5)
    raise StackError(
        f"{component} did not become healthy on {address(component)} within {timeout:.0f}s "
        f"(pid {pid} left running; `stop` it); see {log_file(component)}\n" + _log_tail(component)
    )


def ferretdb_env() -> dict[str, str]:
    """FerretDB's process environment: GOGC (ORDERFLOW_FERRETDB_GOGC, default 400). It allocates a few objects
    per document field; with Go's default 100 its garbage collector took ~15% of its CPU under the benchmark,
    so a larger heap target trades memory (dev/CI only) for CPU. ORDERFLOW_FERRETDB_DOC_CACHE, passed through
    as set, sizes patch 9's cache of decoded documents (entries per generation, default 8192, 0 off)."""
    return {"GOGC": os.environ.get("ORDERFLOW_FERRETDB_GOGC", "400")}


def start(component: str, *, timeout: float = START_TIMEOUT, progress: Progress | None = None) -> None:
    """Start a component in the background and wait until it is healthy; no-op if already running.

    Starting FerretDB on the PostgreSQL backend starts PostgreSQL first if it is not running.
    """
    name = _check_component(component)
    say = progress or _say
    if name == "ferretdb" and ferretdb_backend() == "postgresql" and _running_pid("postgres") is None:
        start("postgres", timeout=timeout, progress=progress)
    with _lock(name):
        pid = _running_pid(name)
        if pid is not None and _read_pid(name) != pid:
            _write_pid(name, pid)
            say(f"[{name}] already running (pid {pid}) but its pid file was lost: adopted; waiting for {address(name)}")
            _wait_healthy(name, pid, lambda: None if _alive(name, pid) else -1, timeout)
            say(f"[{name}] healthy on {address(name)}")
            return
        if pid is not None:
            say(f"[{name}] already running (pid {pid}) on {address(name)}")
            return
        pid_file(name).unlink(missing_ok=True)
        if _port_open(_port(name), timeout=0.5):
            raise StackError(
                f"{name}: port {_port(name)} is already in use by a process this tool did not start"
                f"{_holder(_port(name))}; stop it or set {_PORT_ENV[name]}"
            )
        for sub in ("logs", "run"):
            (state_dir() / sub).mkdir(parents=True, exist_ok=True)
        run_as: str | None = None
        if name == "postgres":
            cmd, run_as = _prepare_postgres(say)
        elif name == "kafka":
            cmd = _prepare_kafka(say)
        else:
            cmd = _prepare_ferretdb(say)
        started = time.monotonic()
        with log_file(name).open("ab") as log:
            log.write(f"\n===== orderflow.dev.stack: starting {name} at {time.ctime()} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=data_dir("postgres") if name == "postgres" else state_dir(),
                env={**os.environ, **_user_env(run_as), **(ferretdb_env() if name == "ferretdb" else {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_user_kwargs(run_as),
            )
        _write_pid(name, proc.pid)
        say(f"[{name}] started (pid {proc.pid}); waiting for {address(name)} (log: {log_file(name)})")
        _wait_healthy(name, proc.pid, proc.poll, timeout)
        if name == "postgres":
            _ensure_pg_database(say)
        say(f"[{name}] healthy on {address(name)} after {time.monotonic() - started:.1f}s")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session=True made the server its own process-group leader
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _kill_tree(pid: int, timeout: float) -> None:
    """SIGKILL a server's process group and every descendant, then wait for them all to be gone.

    PostgreSQL's backends call setsid(), so killing the postmaster's group alone would orphan them
    (and a restart would then find the old shared memory still attached).
    """
    children = _descendants(pid)
    _signal_group(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child.kill()
    _wait_gone(pid, timeout)
    psutil.wait_procs(children, timeout=timeout)


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
        if name == "postgres":
            # SIGINT to the postmaster = "fast" shutdown (SIGTERM would wait for clients to disconnect).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        else:
            _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            say(f"[{name}] still running after {timeout:.0f}s; sending SIGKILL")
            _kill_tree(pid, 5.0)
        pid_file(name).unlink(missing_ok=True)
        say(f"[{name}] stopped")


def kill(component: str, *, progress: Progress | None = None) -> None:
    """SIGKILL a component's process group at once (crash simulation); no-op if stopped."""
    name = _check_component(component)
    say = progress or _say
    with _lock(name):
        pid = _running_pid(name)
        if pid is not None:
            _kill_tree(pid, 5.0)
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
    """Install/download/build if needed, start PostgreSQL, Kafka and FerretDB; return the client environment.

    With ``ORDERFLOW_FERRETDB_BACKEND=sqlite`` PostgreSQL is not needed and not started.
    """
    postgres = ferretdb_backend() == "postgresql"
    if postgres:
        ensure_postgres(progress)
    ensure_kafka(progress)
    ensure_ferretdb(progress)
    if secure():
        _prepare_secure(progress or _say)
    for name in COMPONENTS:
        if name != "postgres" or postgres:
            start(name, progress=progress)
    if secure():
        _provision_secure(progress or _say)
    return env()


def _prepare_secure(progress: Progress) -> None:
    """Certificates and passwords for secure mode; a state dir started without them cannot turn secure."""

    if ferretdb_backend() != "postgresql":
        raise StackError("secure mode needs FerretDB's PostgreSQL backend (it checks the store credentials)")
    if not _secure_marker().is_file():
        started = (data_dir("kafka") / "meta.properties", data_dir("postgres") / "PG_VERSION")
        if any(path.exists() for path in started):
            raise StackError(
                f"secure mode needs a fresh state dir, but {state_dir()} holds servers started without it; "
                "set ORDERFLOW_HOME (and the ports) for a secure stack beside this one, or `reset` it"
            )
        state_dir().mkdir(parents=True, exist_ok=True)
        _secure_marker().write_text("SASL_SSL + SCRAM-SHA-512 + ACLs on Kafka, TLS + credentials on FerretDB\n")
    security.ensure(security.material(state_dir()))
    progress(f"[security] certificates and password files in {security.material(state_dir()).directory}")


def _provision_secure(progress: Progress) -> None:
    """Create the topics and the ACLs as the admin principal (both idempotent)."""
    from services.runtime.kafka import ensure_topics

    auth = security.kafka_auth(security.material(state_dir()), security.ADMIN)
    grants = security.grants(os.environ.get("KAFKA_GROUP_PREFIX", ""))

    async def provision() -> None:
        await ensure_topics(address("kafka"), auth=auth)
        await security.create_acls(address("kafka"), auth, grants)

    asyncio.run(provision())
    progress(f"[security] topics and {len(grants)} ACLs in place")


def down(progress: Progress | None = None) -> None:
    """Stop FerretDB, Kafka and PostgreSQL (in that order)."""
    for name in reversed(COMPONENTS):
        stop(name, progress=progress)


def reset(progress: Progress | None = None) -> None:
    """Stop all servers and delete their data."""
    down(progress)
    for name in COMPONENTS:
        shutil.rmtree(data_dir(name), ignore_errors=True)
    (progress or _say)(f"[stack] data deleted under {state_dir() / 'data'}")


# ------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the minimal command line: up, down, status, reset, start/stop/kill <component>."""
    parser = argparse.ArgumentParser(prog="python -m orderflow.dev.stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install/download/build if needed, start the servers, print the client env").add_argument(
        "--secure", action="store_true", help="SASL_SSL + ACLs on Kafka, TLS + credentials on FerretDB"
    )
    sub.add_parser("down", help="stop the servers")
    sub.add_parser("status", help="show whether the servers run")
    sub.add_parser("reset", help="stop the servers and delete their data")
    for verb in ("start", "stop", "kill"):
        sub.add_parser(verb, help=f"{verb} one server").add_argument("component", choices=COMPONENTS)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            if args.secure:
                os.environ["ORDERFLOW_SECURE"] = "1"
            for key, value in up().items():
                print(f"export {key}={shlex.quote(value)}")
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
