"""Secure mode's material and configuration, without servers: certificates, passwords, broker and client
settings, and what the local stack does with them."""

import base64
import hashlib
import hmac
import shutil
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from faststream.security import SASLScram512

from orderflow import security
from orderflow.dev import stack
from services.runtime.kafka import broker_security, client_kwargs
from services.runtime.settings import KafkaClientSettings, ServiceSettings

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> security.Material:
    """Certificates and passwords generated once for the module."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    m = security.material(tmp_path_factory.mktemp("state"))
    security.ensure(m)
    return m


def _handshake(m: security.Material, host: str, client: ssl.SSLContext) -> str:
    """Serve one TLS handshake with the server certificate; return the client's view of the protocol."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(m.server_cert, m.server_key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=host) as tls,
            ):
                return str(tls.version())
        finally:
            thread.join(timeout=5)


@needs_openssl
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_server_certificate_verifies_against_the_local_ca(material: security.Material, host: str) -> None:
    assert _handshake(material, host, ssl.create_default_context(cafile=material.ca_cert)).startswith("TLS")


@needs_openssl
def test_the_server_certificate_is_refused_without_the_local_ca_or_for_another_name(
    material: security.Material,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(material, "127.0.0.1", ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(material, "orders.example.com", ssl.create_default_context(cafile=material.ca_cert))


@needs_openssl
def test_keys_and_passwords_are_private_and_distinct(material: security.Material) -> None:
    files = [material.ca_key, material.server_key, material.kafka_keystore, material.mongo_password_file]
    files += [material.kafka_password_file(p) for p in security.PRINCIPALS]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(material.directory.stat().st_mode) == 0o700
    passwords = [security.password(material.kafka_password_file(p)) for p in security.PRINCIPALS]
    assert len(set(passwords)) == len(passwords) and min(map(len, passwords)) >= 32


@needs_openssl
def test_material_is_created_once(material: security.Material) -> None:
    before = {p: p.read_bytes() for p in material.directory.iterdir()}
    security.ensure(material)
    assert {p: p.read_bytes() for p in material.directory.iterdir()} == before


def test_pg_verifier_matches_rfc_7677() -> None:
    # RFC 7677 section 3: user "user", password "pencil"; the server signature and the client proof.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = security.pg_scram_verifier("pencil", salt=salt, iterations=4096)
    head, keys = verifier.split("$", 1)[1].split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    server_signature = hmac.digest(server_key, auth_message.encode(), "sha256")
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.digest(stored_key, auth_message.encode(), "sha256")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


@needs_openssl
def test_broker_properties_enforce_sasl_ssl_and_acls(material: security.Material) -> None:
    props = security.kafka_properties(material, "127.0.0.1", 19092, 19093)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:ANONYMOUS"
    admin = security.password(material.kafka_password_file(security.ADMIN))
    assert [k for k, v in props.items() if admin in v] == ["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    args = security.scram_format_args(material)
    assert [a.split("[name=")[1].split(",")[0] for a in args[1::2]] == list(security.PRINCIPALS)


def test_no_settings_means_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KAFKA_SASL_PASSWORD_FILE", raising=False)
    assert client_kwargs() == {}
    assert broker_security() is None
    monkeypatch.delenv("MONGODB_USERNAME", raising=False)
    assert ServiceSettings().mongo_credentials() == {}


@needs_openssl
def test_sasl_ssl_settings_from_the_environment(material: security.Material, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SASL_PASSWORD", raising=False)
    for key, value in security.kafka_env(material, "review").items():
        monkeypatch.setenv(key, value)
    kwargs = client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "review"
    assert kwargs["sasl_plain_password"] == security.password(material.kafka_password_file("review"))
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED and kwargs["ssl_context"].check_hostname
    faststream = broker_security()
    assert isinstance(faststream, SASLScram512) and faststream.use_ssl


def test_settings_never_show_a_password(tmp_path: Path) -> None:
    settings = KafkaClientSettings(kafka_sasl_username="intake", kafka_sasl_password="s3cret-value")
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    assert settings.kafka_password() == "s3cret-value"
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert KafkaClientSettings(kafka_sasl_password_file=str(secret_file)).kafka_password() == "from-file"
    mongo = ServiceSettings(mongodb_username="orderflow", mongodb_password_file=str(secret_file))
    assert mongo.mongo_credentials() == {"username": "orderflow", "password": "from-file"}


def test_an_unknown_mechanism_is_an_error() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        client_kwargs(KafkaClientSettings(kafka_sasl_mechanism="GSSAPI-ISH"))


@pytest.fixture
def secure_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secure stack's state dir (not started) on made-up ports."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_SECURE", "1")
    monkeypatch.setenv("ORDERFLOW_KAFKA_PORT", "29092")
    monkeypatch.setenv("ORDERFLOW_MONGO_PORT", "29017")
    monkeypatch.setenv("ORDERFLOW_PG_PORT", "29433")
    monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    stack._prepare_secure(lambda _line: None)
    return tmp_path


def test_secure_stack_listens_only_with_tls_and_passes_credentials_on(
    secure_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "ensure_ferretdb", lambda progress=None: Path("/bin/ferretdb"))
    cmd = stack._prepare_ferretdb(lambda _line: None)
    assert cmd[cmd.index("-listen-addr") + 1] == ""
    assert cmd[cmd.index("-tls-listen-addr") + 1] == "127.0.0.1:29017"
    assert cmd[cmd.index("-postgresql-url") + 1] == "postgres://127.0.0.1:29433/ferretdb"  # no user of its own
    props = stack._kafka_properties()
    assert "listeners=SASL_SSL://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093\n" in props
    assert "PLAINTEXT://127.0.0.1:29092" not in props


def test_secure_client_env_holds_files_not_passwords(secure_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = security.material(secure_home)
    env = stack.env()
    assert env["KAFKA_SASL_USERNAME"] == security.ADMIN
    assert "tls=true" in env["MONGODB_URI"] and f"tlsCAFile={m.ca_cert}" in env["MONGODB_URI"]
    passwords = [security.password(m.kafka_password_file(p)) for p in security.PRINCIPALS]
    passwords.append(security.password(m.mongo_password_file))
    assert not [v for v in env.values() if any(p in v for p in passwords)]
    assert stack.service_env("inventory")["KAFKA_SASL_USERNAME"] == "inventory"
    monkeypatch.delenv("ORDERFLOW_SECURE")
    assert stack.secure()  # the state dir stays secure once started so
    monkeypatch.setenv("ORDERFLOW_HOME", str(secure_home / "elsewhere"))
    assert not stack.secure() and stack.service_env("inventory") == {}


def test_secure_mode_refuses_a_state_dir_started_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_SECURE", "1")
    monkeypatch.delenv("ORDERFLOW_FERRETDB_BACKEND", raising=False)
    (tmp_path / "data" / "kafka").mkdir(parents=True)
    (tmp_path / "data" / "kafka" / "meta.properties").write_text("formatted without SCRAM users\n")
    with pytest.raises(stack.StackError, match="fresh state dir"):
        stack._prepare_secure(lambda _line: None)
    monkeypatch.setenv("ORDERFLOW_FERRETDB_BACKEND", "sqlite")
    with pytest.raises(stack.StackError, match="PostgreSQL backend"):
        stack._prepare_secure(lambda _line: None)


def test_without_secure_mode_the_stack_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERFLOW_SECURE", raising=False)
    monkeypatch.setenv("ORDERFLOW_KAFKA_PORT", "29092")
    assert not stack.secure()
    props = stack._kafka_properties()
    assert "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093\n" in props
    assert "authorizer" not in props and "sasl" not in props
    assert set(stack.env()) == {"KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"}
    assert stack.postgres_url().startswith("postgres://postgres@")
    assert stack.service_env("intake") == {}
