"""Configuration of the local stack (no servers started)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from orderflow.dev import stack


def test_components_start_postgres_before_ferretdb() -> None:
    assert stack.COMPONENTS.index("postgres") < stack.COMPONENTS.index("ferretdb")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "postgresql"), ("postgresql", "postgresql"), ("SQLite", "sqlite")]
)
def test_ferretdb_backend(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    else:
        monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", value)
    assert stack.ferretdb_backend() == expected


def test_unknown_backend_is_a_stack_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "mysql")
    with pytest.raises(stack.StackError):
        stack.ferretdb_backend()


def test_ferretdb_command_per_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_PG_PORT", "6543")
    monkeypatch.setattr(stack, "ensure_ferretdb", lambda progress=None: Path("/bin/ferretdb"))
    monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    cmd = stack._prepare_ferretdb(lambda _line: None)
    assert cmd[cmd.index("-handler") + 1] == "postgresql"
    assert cmd[cmd.index("-postgresql-url") + 1] == "postgres://postgres@127.0.0.1:6543/ferretdb"
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "sqlite")
    cmd = stack._prepare_ferretdb(lambda _line: None)
    assert cmd[cmd.index("-handler") + 1] == "sqlite"
    assert cmd[cmd.index("-sqlite-url") + 1].startswith(f"file:{tmp_path}/data/ferretdb/")


def test_postgres_socket_dir_falls_back_to_tmp_for_long_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", "/x" * 60)
    assert stack._pg_socket_dir() == Path("/tmp")
    monkeypatch.setenv("ORDERFLOW_HOME", "/short")
    assert stack._pg_socket_dir() == Path("/short/run/postgres-socket")


def test_ferretdb_patches_apply_to_the_pinned_module() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed")
    listed = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", stack.FERRETDB_MODULE],
        cwd=stack.FERRETDB_SRC,
        capture_output=True,
        text=True,
        check=False,
    )
    module_dir = Path(listed.stdout.strip())
    if listed.returncode != 0 or not listed.stdout.strip() or not module_dir.is_dir():
        pytest.skip("FerretDB module is not in the Go module cache")
    for rel, old, _new in stack.FERRETDB_PATCHES:
        if old:
            assert (module_dir / rel).read_text().count(old) == 1, rel
        else:
            assert not (module_dir / rel).exists(), rel


def test_postgres_can_reach_a_data_dir_under_a_private_checkout(tmp_path: Path) -> None:
    private = tmp_path / "checkout"
    data = private / ".orderflow" / "data"
    data.mkdir(parents=True)
    private.chmod(0o700)  # as `mktemp -d` makes it
    said: list[str] = []
    stack._let_traverse(data, None, said.append)  # not root: nothing to do
    assert private.stat().st_mode & 0o777 == 0o700 and not said
    stack._let_traverse(data, "postgres", said.append)
    assert private.stat().st_mode & 0o777 == 0o701  # search only: nothing became readable
    assert any(str(private) in line for line in said)
