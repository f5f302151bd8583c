"""Secure mode of the local stack: who may read and write which topic, and the material that enforces it.

One ownership table (:data:`CONSUMES`, :data:`PRODUCES`, the external ``channel`` principal) becomes the
Kafka ACLs; a local CA and one server certificate (SAN 127.0.0.1/localhost) serve Kafka's SASL_SSL
listener and FerretDB's TLS listener; passwords are generated once into files under the stack's state
directory (mode 0600) and reach clients only as ``*_PASSWORD_FILE`` paths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contracts import topics
from services.fulfillment import app as fulfillment
from services.intake import app as intake
from services.inventory import app as inventory
from services.review import app as review
from services.runtime.settings import KafkaClientSettings

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"  # super user: provisioning, operators' tools (lag, demo)
CHANNEL = "channel"  # the outside world: sales channels, ERP master data, warehouse and carrier events
MONGO_USER = "orderflow"  # FerretDB hands it to PostgreSQL, which checks the password
SERVICES: tuple[str, ...] = (intake.NAME, review.NAME, inventory.NAME, fulfillment.NAME)
PRINCIPALS: tuple[str, ...] = (ADMIN, *SERVICES, CHANNEL)

CONSUMES: dict[str, tuple[str, ...]] = {
    intake.NAME: intake.CONSUMES,
    review.NAME: review.CONSUMES,
    inventory.NAME: inventory.CONSUMES,
    fulfillment.NAME: fulfillment.CONSUMES,
}
# Every service publishes statuses and dead letters; the rest is what its domain emits
# (tests/unit/test_security_ownership.py reads the code to keep this table true).
PRODUCES: dict[str, tuple[str, ...]] = {
    intake.NAME: (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.ORDERS_ACCEPTED, topics.ORDERS_SHIPPING),
    review.NAME: (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.ORDERS_APPROVED),
    inventory.NAME: (topics.ORDERS_STATUS, topics.ORDERS_DLQ, topics.INVENTORY_ALLOCATIONS, topics.ORDERS_CANCELLED),
    fulfillment.NAME: (
        topics.ORDERS_STATUS,
        topics.ORDERS_DLQ,
        topics.FULFILLMENT_SHIPMENTS,
        topics.SUPPLY_INSTRUCTIONS,
        topics.FINANCE_INVOICE_REQUESTS,
        topics.FULFILLMENT_DISPATCHED,
        topics.ORDERS_CANCELLED,
    ),
}
CHANNEL_WRITES: tuple[str, ...] = (
    topics.ORDERS_SUBMITTED,
    topics.ORDERS_COMMANDS,
    topics.MASTERDATA_CUSTOMERS,
    topics.MASTERDATA_PRODUCTS,
    topics.INVENTORY_MOVEMENTS,
    topics.FULFILLMENT_EVENTS,
)
CHANNEL_READS: tuple[str, ...] = (
    topics.ORDERS_STATUS,
    topics.FULFILLMENT_SHIPMENTS,
    topics.SUPPLY_INSTRUCTIONS,
    topics.FINANCE_INVOICE_REQUESTS,
)

Operation = Literal["READ", "WRITE"]
Resource = Literal["topic", "group"]
# Kafka protocol codes (org.apache.kafka.common.acl / resource).
_RESOURCE = {"topic": 2, "group": 3}
_OPERATION = {"READ": 3, "WRITE": 4}
_ANY, _LITERAL, _ALLOW = 1, 3, 3


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may perform `operation` on the literal topic or group `name`."""

    principal: str
    resource: Resource
    name: str
    operation: Operation


def grants(group_prefix: str = "") -> list[Grant]:
    """The ACLs of secure mode: a service reads only what it consumes (as its own group) and writes only
    what it produces; the channel principal writes the inbound public topics and reads the outbound ones.
    (A WRITE on any topic also lets a principal open an idempotent producer, KIP-679.)"""
    out = [Grant(CHANNEL, "topic", t, "WRITE") for t in CHANNEL_WRITES]
    out += [Grant(CHANNEL, "topic", t, "READ") for t in CHANNEL_READS]
    for service in SERVICES:
        out += [Grant(service, "topic", t, "READ") for t in CONSUMES[service]]
        out += [Grant(service, "topic", t, "WRITE") for t in PRODUCES[service]]
        out.append(Grant(service, "group", group_prefix + service, "READ"))
    return sorted(set(out))


# ------------------------------------------------------------------------------------ material


@dataclass(frozen=True)
class Material:
    """Where secure mode keeps its certificates, keys and passwords (a 0700 directory)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The local CA's certificate (what clients trust)."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The local CA's private key."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate (SAN IP:127.0.0.1, DNS:localhost) followed by the CA certificate."""
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        """The server's private key (PKCS#8, unencrypted, mode 0600)."""
        return self.directory / "server.key"

    @property
    def kafka_keystore(self) -> Path:
        """Kafka's PEM keystore: the server key and certificate chain in one file."""
        return self.directory / "kafka-keystore.pem"

    def kafka_password_file(self, principal: str) -> Path:
        """The SCRAM password file of a Kafka principal."""
        return self.directory / f"kafka-{principal}.password"

    @property
    def mongo_password_file(self) -> Path:
        """The password file of the store user."""
        return self.directory / f"mongo-{MONGO_USER}.password"


def material(state: Path) -> Material:
    """The secure-mode material of a stack state directory."""
    return Material(state / "security")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")


def ensure_certificates(m: Material, days: int = 825) -> None:
    """Create the local CA and the server certificate unless both exist; keys are written mode 0600."""
    if all(p.is_file() for p in (m.ca_cert, m.server_cert, m.server_key, m.kafka_keystore)):
        return
    m.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    old_umask = os.umask(0o077)
    try:
        _openssl(
            "req", "-x509", *ec, "-keyout", str(m.ca_key), "-out", str(m.ca_cert), "-days", str(days),
            "-subj", "/CN=orderflow local CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        csr, ext = m.directory / "server.csr", m.directory / "server.ext"
        _openssl("req", "-new", *ec, "-keyout", str(m.server_key), "-out", str(csr), "-subj", "/CN=localhost")
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        leaf = m.directory / "server-leaf.pem"
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(m.ca_cert), "-CAkey", str(m.ca_key), "-CAcreateserial",
            "-out", str(leaf), "-days", str(days), "-extfile", str(ext),
        )  # fmt: skip
        chain = leaf.read_bytes() + m.ca_cert.read_bytes()
        _write_private(m.server_cert, chain)
        _write_private(m.kafka_keystore, m.server_key.read_bytes() + chain)
        for scratch in (csr, ext, leaf, m.directory / "ca.srl"):
            scratch.unlink(missing_ok=True)
    finally:
        os.umask(old_umask)


def ensure_passwords(m: Material) -> None:
    """Generate a random password file (mode 0600) for every Kafka principal and the store user, once."""
    m.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [*(m.kafka_password_file(p) for p in PRINCIPALS), m.mongo_password_file]:
        if not path.is_file():
            _write_private(path, secrets.token_urlsafe(24).encode() + b"\n")


def password(path: Path) -> str:
    """The password stored in a password file."""
    return path.read_text().strip()


def ensure(m: Material) -> None:
    """Certificates and passwords, created on first use and kept afterwards."""
    ensure_certificates(m)
    ensure_passwords(m)


# --------------------------------------------------------------------------------------- kafka


def scram_format_args(m: Material) -> list[str]:
    """`kafka-storage format` arguments that seed every principal's SCRAM credential into the metadata log."""
    out: list[str] = []
    for principal in PRINCIPALS:
        out += ["--add-scram", f"{MECHANISM}=[name={principal},password={password(m.kafka_password_file(principal))}]"]
    return out


def kafka_properties(m: Material, host: str, port: int, controller_port: int) -> dict[str, str]:
    """Broker settings of secure mode: a SASL_SSL client listener with SCRAM-SHA-512, the controller
    listener PLAINTEXT on loopback, StandardAuthorizer denying whatever no ACL allows."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{password(m.kafka_password_file(ADMIN))}";'
    )
    return {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(m.kafka_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(m.ca_cert),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The broker reaches the controller over the PLAINTEXT controller listener as ANONYMOUS.
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
        "auto.create.topics.enable": "false",
    }


def kafka_env(m: Material, principal: str) -> dict[str, str]:
    """The client environment of a Kafka principal (KafkaClientSettings reads it); no password in it."""
    return {
        "KAFKA_SASL_MECHANISM": MECHANISM,
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD_FILE": str(m.kafka_password_file(principal)),
        "KAFKA_SSL_CAFILE": str(m.ca_cert),
    }


def kafka_auth(m: Material, principal: str) -> KafkaClientSettings:
    """Client settings that authenticate as `principal`."""
    env = kafka_env(m, principal)
    return KafkaClientSettings(
        kafka_sasl_mechanism=env["KAFKA_SASL_MECHANISM"],
        kafka_sasl_username=env["KAFKA_SASL_USERNAME"],
        kafka_sasl_password_file=env["KAFKA_SASL_PASSWORD_FILE"],
        kafka_ssl_cafile=env["KAFKA_SSL_CAFILE"],
    )


async def create_acls(
    bootstrap: str, auth: KafkaClientSettings, wanted: Sequence[Grant], timeout: float = 30.0
) -> None:
    """Create the ACLs as the admin principal (creating an existing ACL is a no-op) and return once the
    broker enforces all of them; raises on any refusal."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

    from services.runtime.kafka import client_kwargs

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-security", **client_kwargs(auth))
    await admin.start()
    try:
        for grant in wanted:
            request = CreateAclsRequest(
                _RESOURCE[grant.resource], grant.name, _LITERAL, f"User:{grant.principal}", "*",
                _OPERATION[grant.operation], _ALLOW,
            )  # fmt: skip
            # aiokafka has the request but no admin method for it.
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code:
                    raise RuntimeError(f"CreateAcls {grant} refused: error {code} {message}")
        # The controller commits ACLs before the broker's authorizer has them: wait until it describes them all.
        describe_all = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            described = await admin._send_request(describe_all)
            if described.error_code:
                raise RuntimeError(f"DescribeAcls failed: error {described.error_code} {described.error_message}")
            enforced = {
                (kind, name, principal, operation)
                for kind, name, _pattern, acls in described.resources
                for principal, _host, operation, _permission in acls
            }
            if all(
                (_RESOURCE[g.resource], g.name, f"User:{g.principal}", _OPERATION[g.operation]) in enforced
                for g in wanted
            ):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the broker does not enforce all {len(wanted)} ACLs after {timeout:.0f}s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


# ----------------------------------------------------------------------------------- the store


def pg_scram_verifier(secret: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677), so the plain password never
    reaches the server, its logs or its catalog."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def pg_hba() -> str:
    """pg_hba.conf of secure mode: the private Unix socket stays trusted (the stack's own administration),
    TCP needs a SCRAM password: FerretDB passes on the client's credentials."""
    return (
        "# Generated by orderflow/dev/stack.py (secure mode).\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host all all ::1/128 scram-sha-256\n"
    )


def mongo_env(m: Material, address: str) -> dict[str, str]:
    """The store's client environment in secure mode: TLS with the local CA and PLAIN credentials
    (FerretDB 1.x's mechanism, safe inside TLS); the password only as a file."""
    return {
        "MONGODB_URI": f"mongodb://{address}/?tls=true&tlsCAFile={m.ca_cert}&authMechanism=PLAIN",
        "MONGODB_USERNAME": MONGO_USER,
        "MONGODB_PASSWORD_FILE": str(m.mongo_password_file),
    }
