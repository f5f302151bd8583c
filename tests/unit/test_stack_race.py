"""Start and stop of a stack component racing another start or stop: a postgres of our data directory whose pid
file was lost is adopted (found by its postmaster.pid), never reported as a stranger holding the port; one of
another data directory is left alone. Runs a stand-in postmaster (argv `postgres -D <dir>`, listening on a scratch
port) under a scratch ORDERFLOW_HOME, so no real server is touched."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow.dev import stack

# SIGINT (postgres' fast shutdown) ends it even when the tests run with SIGINT ignored (started with `&`)
LISTEN = (
    "import signal, socket, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[-1]))); s.listen()\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "home"))
    port = stack.unused_port(span=4)  # Kafka's controller takes the port after Kafka's
    for variable, offset in (("ORDERFLOW_PG_PORT", 0), ("ORDERFLOW_KAFKA_PORT", 1), ("ORDERFLOW_MONGO_PORT", 3)):
        monkeypatch.setenv(variable, str(port + offset))
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "postgresql")  # the stand-ins are PostgreSQL + FerretDB
    monkeypatch.delenv("ORDERFLOW_SECURE", raising=False)
    # the stand-ins answer TCP, not the servers' protocols
    monkeypatch.setattr(stack, "_postgres_ready", lambda: True)
    monkeypatch.setattr(stack, "_kafka_ready", lambda: True)
    for sub in ("data/postgres", "run"):
        (tmp_path / "home" / sub).mkdir(parents=True)
    return tmp_path / "home"


@pytest.fixture
def standins() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def standin(argv: list[str], started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A process whose command line is `argv` (ending in the port it listens on), in its own session like the
    servers `stack.start` runs."""
    proc = subprocess.Popen(
        [argv[0], "-c", LISTEN, *argv[1:]],
        executable=sys.executable,
        env={**os.environ, "PYTHONHOME": sys.base_prefix},  # argv[0] no longer leads Python to its library
        start_new_session=True,
    )
    started.append(proc)
    deadline = time.monotonic() + 10
    while not stack._port_open(int(argv[-1]), timeout=0.2):
        assert proc.poll() is None and time.monotonic() < deadline, "the stand-in never listened"
        time.sleep(0.05)
    return proc


def postmaster(data: Path, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A stand-in for our postmaster of `data` holding the postgres port, with its pid in data/postmaster.pid as
    PostgreSQL writes it."""
    proc = standin(["postgres", "-D", str(data), str(stack.postgres_port())], started)
    (data / "postmaster.pid").write_text(f"{proc.pid}\n{data}\n0\n{stack.postgres_port()}\n")
    return proc


def test_a_running_postgres_whose_pid_file_was_lost_is_adopted_then_stopped(
    home: Path, standins: list[subprocess.Popen[bytes]]
) -> None:
    proc = postmaster(home / "data" / "postgres", standins)
    assert not stack.pid_file("postgres").exists()
    assert stack.status()["postgres"]["pid"] == proc.pid
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stack.start("postgres", timeout=10, progress=lambda _: None)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    racers = [threading.Thread(target=start) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert errors == []
    assert stack.pid_file("postgres").read_text() == f"{proc.pid}\n"
    assert proc.poll() is None
    said: list[str] = []
    stack.stop("postgres", timeout=10, progress=said.append)
    assert proc.wait(timeout=10) is not None
    assert not [line for line in said if "SIGKILL" in line]  # the fast shutdown (SIGINT) ended it
    assert not stack.pid_file("postgres").exists()


def test_the_pid_file_survives_a_start_that_finds_it_spelled_another_way(
    home: Path, standins: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = postmaster(home / "data" / "postgres", standins)
    (tmp_path / "link").symlink_to(home)
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "link"))
    stack.start("postgres", timeout=10, progress=lambda _: None)
    assert stack.pid_file("postgres").read_text() == f"{proc.pid}\n"
    stack.start("postgres", timeout=10, progress=lambda _: None)
    assert stack.status()["postgres"] == {"running": True, "pid": proc.pid, "address": stack.address("postgres")}


def test_a_postgres_of_another_data_dir_on_the_port_is_not_ours(
    home: Path, standins: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    other = tmp_path / "other" / "data" / "postgres"
    other.mkdir(parents=True)
    proc = postmaster(other, standins)
    (home / "data" / "postgres" / "postmaster.pid").write_text(f"{proc.pid}\n{other}\n")
    with pytest.raises(stack.StackError, match=f"port {stack.postgres_port()} is already in use"):
        stack.start("postgres", timeout=10, progress=lambda _: None)
    stack.stop("postgres", timeout=10, progress=lambda _: None)
    assert proc.poll() is None
    assert not stack.pid_file("postgres").exists()


def own_command(component: stack.Component) -> list[str]:
    if component == "kafka":
        return ["java", "-cp", "libs/*", "kafka.Kafka", str(stack.state_dir() / "run" / "kafka.properties")]
    return [
        "ferretdb",
        "-listen-addr",
        stack.address("ferretdb"),
        "-sqlite-url",
        stack.ferretdb_sqlite_url(stack.data_dir("ferretdb")),
        "-postgresql-url",
        stack.postgres_url(),
    ]


@pytest.mark.parametrize("component", ["kafka", "ferretdb"])
def test_kafka_and_ferretdb_whose_pid_file_was_lost_are_found_by_their_command_line(
    home: Path, standins: list[subprocess.Popen[bytes]], component: stack.Component
) -> None:
    postmaster(home / "data" / "postgres", standins)  # FerretDB's start needs postgres running
    proc = standin([*own_command(component), str(stack._port(component))], standins)
    stack.start(component, timeout=10, progress=lambda _: None)
    assert stack.pid_file(component).read_text() == f"{proc.pid}\n"
    stack.stop(component, timeout=10, progress=lambda _: None)
    assert proc.wait(timeout=10) is not None
    assert stack.status()[component]["running"] is False


def test_a_kafka_of_another_state_dir_on_the_port_is_not_ours(
    home: Path, standins: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    proc = standin(
        ["java", "kafka.Kafka", str(tmp_path / "other" / "run" / "kafka.properties"), str(stack.kafka_port())], standins
    )
    with pytest.raises(stack.StackError, match=f"port {stack.kafka_port()} is already in use .*pid {proc.pid}: java"):
        stack.start("kafka", timeout=10, progress=lambda _: None)
    assert proc.poll() is None
