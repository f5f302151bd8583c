"""`orderflow console user add|passwd`: the password is read (stdin or a hidden prompt typed twice) and given to
the user accounts with the name and role, and the command says what it did (the store is a stand-in)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from orderflow import reach
from orderflow.cli import app
from orderflow.console import cli


class Accounts:
    """Records the calls the commands make."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def add(self, name: str, role: str, password: str) -> None:
        self.calls.append(("add", name, role, password))

    async def passwd(self, name: str, password: str, role: str | None = None) -> None:
        self.calls.append(("passwd", name, password, role))


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> Accounts:
    fake = Accounts()

    async def reachable() -> None:
        return None

    def run(action: Callable[[Any], Awaitable[Any]]) -> Any:
        return asyncio.run(action(fake))

    monkeypatch.setattr(reach, "check_store", reachable)
    monkeypatch.setattr(cli, "_accounts_run", run)
    return fake


PW = "s3cret pw"
STDIN, PROMPT = f"{PW}\n", f"{PW}\n{PW}\n"  # the prompt asks twice


@pytest.mark.parametrize(
    ("args", "typed", "call", "said"),
    [
        (
            ["add", "ann", "--role", "reviewer", "--password-stdin"],
            STDIN,
            ("add", "ann", "reviewer", PW),
            "user ann (reviewer) added",
        ),
        (["add", "ann", "--role", "reviewer"], PROMPT, ("add", "ann", "reviewer", PW), "user ann (reviewer) added"),
        (["passwd", "bob", "--password-stdin"], STDIN, ("passwd", "bob", PW, None), "password of bob set"),
        (["passwd", "bob", "--role", "supervisor"], PROMPT, ("passwd", "bob", PW, "supervisor"), "password of bob set"),
    ],
)
def test_the_password_read_goes_to_the_accounts_with_the_name_and_role(
    accounts: Accounts, args: list[str], typed: str, call: tuple[Any, ...], said: str
) -> None:
    result = CliRunner().invoke(app, ["console", "user", *args], input=typed)
    assert result.exit_code == 0, result.output
    assert accounts.calls == [call] and result.output.rstrip().endswith(said)
