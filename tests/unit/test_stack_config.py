"""Configuration of the local stack (no servers started)."""

import shutil
from pathlib import Path

import pytest

from orderflow.dev import stack


def test_components_start_postgres_before_ferretdb() -> None:
    assert stack.COMPONENTS.index("postgres") < stack.COMPONENTS.index("ferretdb")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "sqlite"), ("", "sqlite"), ("postgresql", "postgresql"), ("SQLite", "sqlite")]
)
def test_ferretdb_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: str) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERFLOW_SECURE", raising=False)
    if value is None:
        monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    else:
        monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", value)
    assert stack.ferretdb_backend() == expected


def test_secure_mode_defaults_to_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """FerretDB 1.x checks the store users' passwords only through PostgreSQL."""
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_SECURE", "1")
    monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    assert stack.ferretdb_backend() == "postgresql"


def test_unknown_backend_is_a_stack_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "mysql")
    with pytest.raises(stack.StackError):
        stack.ferretdb_backend()


def test_ferretdb_command_per_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_PG_PORT", "6543")
    monkeypatch.setattr(stack, "ensure_ferretdb", lambda progress=None: Path("/bin/ferretdb"))
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "postgresql")
    cmd = stack._prepare_ferretdb(lambda _line: None)
    assert cmd[cmd.index("-handler") + 1] == "postgresql"
    assert cmd[cmd.index("-postgresql-url") + 1] == "postgres://postgres@127.0.0.1:6543/ferretdb"
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "sqlite")
    cmd = stack._prepare_ferretdb(lambda _line: None)
    assert cmd[cmd.index("-handler") + 1] == "sqlite"
    assert cmd[cmd.index("-sqlite-url") + 1].startswith(f"file:{tmp_path}/data/ferretdb/")


def test_only_the_ferretdb_of_this_state_directory_is_ours(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two checkouts' FerretDBs share the address and the PostgreSQL URL: `stack down` in one must not adopt the
    other's (it did, by address and URL alone)."""
    monkeypatch.setattr(stack, "ensure_ferretdb", lambda progress=None: Path("/bin/ferretdb"))
    monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "other"))
    theirs = stack._prepare_ferretdb(lambda _line: None)
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path / "ours"))
    ours = stack._prepare_ferretdb(lambda _line: None)
    assert stack._started_here("ferretdb", ours)
    assert not stack._started_here("ferretdb", theirs)


def test_postgres_socket_dir_falls_back_to_tmp_for_long_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", "/x" * 60)
    assert stack._pg_socket_dir() == Path("/tmp")
    monkeypatch.setenv("ORDERFLOW_HOME", "/short")
    assert stack._pg_socket_dir() == Path("/short/run/postgres-socket")


def test_ferretdb_patches_apply_to_the_pinned_module(tmp_path: Path) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed")
    listed = stack._go(go, "list", "-m", "-f", "{{.Dir}}", stack.FERRETDB_MODULE)
    module_dir = Path(listed.stdout.strip())
    if listed.returncode != 0 or not listed.stdout.strip() or not module_dir.is_dir():
        pytest.skip("FerretDB module is not in the Go module cache")
    patched = tmp_path / "FerretDB"
    assert stack.apply_ferretdb_patches(module_dir, patched) == len(stack.ferretdb_patches()) == 11
    assert (patched / "internal/handler/orderflow_lock.go").is_file()
    assert "orderflowNoTracking" in (patched / "internal/util/resource/resource.go").read_text()
    assert "orderflowIDWhere(params.Filter)" in (patched / "internal/backends/sqlite/collection.go").read_text()
    assert '`->"_id"`' in (patched / "internal/backends/sqlite/metadata/metadata.go").read_text()
    assert "orderflowDebug(" in (patched / "internal/util/fsql/tx.go").read_text()
    assert "newOrderflowPending(c)" in (patched / "internal/handler/msg_update.go").read_text()
    assert "decoded.get(b)" in (patched / "internal/backends/sqlite/query_iterator.go").read_text()
    assert "stmt.ExecContext(ctx, string(b), arg)" in (patched / "internal/backends/sqlite/collection.go").read_text()
    assert "tx.stmt(ctx, query)" in (patched / "internal/util/fsql/tx.go").read_text()
    assert "json_each(?)" in (patched / "internal/backends/sqlite/orderflow_id.go").read_text()
    assert not [p for p in patched.rglob("*") if p.suffix in (".orig", ".rej")]


def test_every_ferretdb_patch_explains_itself_in_its_header() -> None:
    patches = stack.ferretdb_patches()
    for number, path in enumerate(patches, start=1):
        header = path.read_text().split("\n--- a/", 1)[0]
        assert header.startswith(f"orderflow patch {number} of {len(patches)} for FerretDB 1.24.2: "), path.name
        assert len(header.split()) > 40, f"{path.name}: the header should say what it fixes and why"


def _fake_module(tmp_path: Path, text: str) -> tuple[Path, Path]:
    module, patches = tmp_path / "module", tmp_path / "patches"
    module.mkdir()
    patches.mkdir()
    (module / "a.go").write_text(text)
    patch = "Explains the change.\n\n--- a/a.go\n+++ b/a.go\n@@ -1 +1 @@\n-package a\n+package b\n"
    (patches / "0001-rename.patch").write_text(patch)
    return module, patches


def test_patches_apply_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module, patches = _fake_module(tmp_path, "package a\n")
    monkeypatch.setattr(stack, "FERRETDB_PATCH_DIR", patches)
    assert stack.apply_ferretdb_patches(module, tmp_path / "out") == 1
    assert (tmp_path / "out" / "a.go").read_text() == "package b\n"
    assert (module / "a.go").read_text() == "package a\n"  # the module itself stays pristine


def test_a_patch_that_does_not_apply_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module, patches = _fake_module(tmp_path, "package changed_upstream\n")
    monkeypatch.setattr(stack, "FERRETDB_PATCH_DIR", patches)
    with pytest.raises(stack.StackError, match=r"0001-rename\.patch does not apply"):
        stack.apply_ferretdb_patches(module, tmp_path / "out")
    monkeypatch.setattr(stack, "FERRETDB_PATCH_DIR", tmp_path / "empty")
    with pytest.raises(stack.StackError, match=r"no \*\.patch files"):
        stack.apply_ferretdb_patches(module, tmp_path / "out")


def test_build_cache_key_follows_the_patch_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = tmp_path / "patches"
    shutil.copytree(stack.FERRETDB_PATCH_DIR, copies)
    monkeypatch.setattr(stack, "FERRETDB_PATCH_DIR", copies)
    before = stack.ferretdb_binary()
    last = sorted(copies.glob("*.patch"))[-1]
    last.write_text(last.read_text() + " ")
    edited = stack.ferretdb_binary()
    (copies / "0006-more.patch").write_text("x")
    assert len({before, edited, stack.ferretdb_binary()}) == 3


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


def test_the_test_profile_has_its_own_directory_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ORDERFLOW_HOME", "ORDERFLOW_KAFKA_PORT", "ORDERFLOW_MONGO_PORT", "ORDERFLOW_PG_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ORDERFLOW_PROFILE", raising=False)
    default = (stack.state_dir(), stack.kafka_port(), stack.mongo_port(), stack.postgres_port())
    assert default == (stack.REPO_ROOT / ".orderflow", 9092, 27017, 5433)
    monkeypatch.setenv("ORDERFLOW_PROFILE", "test")
    test = (stack.state_dir(), stack.kafka_port(), stack.mongo_port(), stack.postgres_port())
    assert test == (stack.REPO_ROOT / ".orderflow-test", 19092, 27027, 5434)
    assert stack.env()["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    ports = [p for profile in stack.PROFILES.values() for p in (profile.kafka_port, profile.kafka_port + 1)]
    ports += [p for profile in stack.PROFILES.values() for p in (profile.mongo_port, profile.postgres_port)]
    assert len(set(ports)) == len(ports)  # no two servers of any profiles share a port (Kafka's controller: +1)


def test_explicit_settings_override_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORDERFLOW_PROFILE", "test")
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_KAFKA_PORT", "29092")
    monkeypatch.delenv("ORDERFLOW_MONGO_PORT", raising=False)
    assert (stack.state_dir(), stack.kafka_port(), stack.mongo_port()) == (tmp_path, 29092, 27027)


def test_an_unknown_profile_is_a_stack_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_PROFILE", "staging")
    with pytest.raises(stack.StackError, match="ORDERFLOW_PROFILE='staging'; expected one of default, test"):
        stack.state_dir()
