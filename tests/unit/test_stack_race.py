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

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[3]))); s.listen()\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORDERFLOW_PG_PORT", str(stack.unused_port()))
    monkeypatch.setattr(stack, "_postgres_ready", lambda: True)  # the stand-in answers TCP, not the protocol
    (tmp_path / "home" / "data" / "postgres").mkdir(parents=True)
    return tmp_path / "home"


@pytest.fixture
def postmasters() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def postmaster(data: Path, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A process that looks like our postmaster of `data` (argv `postgres -D data`) and holds the postgres port,
    with its pid in data/postmaster.pid as PostgreSQL writes it."""
    proc = subprocess.Popen(
        ["postgres", "-c", LISTEN, "-D", str(data), str(stack.postgres_port())],
        executable=sys.executable,
        env={**os.environ, "PYTHONHOME": sys.base_prefix},  # argv[0] no longer leads Python to its library
    )
    started.append(proc)
    (data / "postmaster.pid").write_text(f"{proc.pid}\n{data}\n0\n{stack.postgres_port()}\n")
    deadline = time.monotonic() + 10
    while not stack._port_open(stack.postgres_port(), timeout=0.2):
        assert time.monotonic() < deadline, "the stand-in postmaster never listened"
        time.sleep(0.05)
    return proc


def test_a_running_postgres_whose_pid_file_was_lost_is_adopted_then_stopped(
    home: Path, postmasters: list[subprocess.Popen[bytes]]
) -> None:
    proc = postmaster(home / "data" / "postgres", postmasters)
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
    stack.stop("postgres", timeout=10, progress=lambda _: None)
    assert proc.wait(timeout=10) is not None
    assert not stack.pid_file("postgres").exists()


def test_the_pid_file_survives_a_start_that_finds_it_spelled_another_way(
    home: Path, postmasters: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = postmaster(home / "data" / "postgres", postmasters)
    (tmp_path / "link").symlink_to(home)
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "link"))
    stack.start("postgres", timeout=10, progress=lambda _: None)
    assert stack.pid_file("postgres").read_text() == f"{proc.pid}\n"
    stack.start("postgres", timeout=10, progress=lambda _: None)
    assert stack.status()["postgres"] == {"running": True, "pid": proc.pid, "address": stack.address("postgres")}


def test_a_postgres_of_another_data_dir_on_the_port_is_not_ours(
    home: Path, postmasters: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    other = tmp_path / "other" / "data" / "postgres"
    other.mkdir(parents=True)
    proc = postmaster(other, postmasters)
    (home / "data" / "postgres" / "postmaster.pid").write_text(f"{proc.pid}\n{other}\n")
    with pytest.raises(stack.StackError, match=f"port {stack.postgres_port()} is already in use"):
        stack.start("postgres", timeout=10, progress=lambda _: None)
    stack.stop("postgres", timeout=10, progress=lambda _: None)
    assert proc.poll() is None
    assert not stack.pid_file("postgres").exists()
