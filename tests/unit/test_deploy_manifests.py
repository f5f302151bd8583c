"""deploy/: Kubernetes manifests, KEDA ScaledObjects, compose, Prometheus and Grafana, validated offline and
checked against the code they deploy (topics, consumer groups, partitions, settings, probes, metric names)."""

import ast
import copy
import functools
import importlib
import inspect
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices
from pymongo.uri_parser import parse_uri

from orderflow import cli, security
from orderflow.dev.stack import REPO_ROOT
from orderflow.procs import SERVICES
from services.runtime import health
from services.runtime.kafka import PARTITIONS, client_kwargs, make_broker
from services.runtime.settings import ServiceSettings

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.37.0"  # the newest schemas bundled with the pinned kubernetes-validate
# Custom resources the API server's own schemas do not cover: validated against these instead.
KEDA_SCHEMAS = {
    "ScaledObject": K8S / "schemas" / "keda-scaledobject-v1alpha1.json",
    "TriggerAuthentication": K8S / "schemas" / "keda-triggerauthentication-v1alpha1.json",
}
# KEDA's kafka scaler: its name for each SASL mechanism the services accept, and the parameters it takes
# from a TriggerAuthentication (pkg/scalers/kafka_scaler.go; `sasl` and `tls` may come from either place).
KEDA_SASL = {"SCRAM-SHA-512": "scram_sha512", "SCRAM-SHA-256": "scram_sha256", "PLAIN": "plaintext"}
KEDA_KAFKA_AUTH_PARAMS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
CODE_DIRS = ("services", "orderflow", "contracts")

Doc = dict[str, Any]


def load_all(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = {p.name: load_all(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"}
OBJECTS = [d for docs in MANIFESTS.values() for d in docs]
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
CONFIG = next(d for d in OBJECTS if d["kind"] == "ConfigMap")["data"]
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def obj(kind: str, name: str) -> Doc:
    found = [d for d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(service: str) -> Doc:
    containers = obj("Deployment", service)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.config")
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v.__module__ == module.__name__
    )


def unprefixed_env_names() -> set[str]:
    """Variables ServiceSettings reads without a service prefix (its AliasChoices)."""
    names = set()
    for field in ServiceSettings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names |= {c for c in field.validation_alias.choices if isinstance(c, str) and c.isupper()}
    return names


def k8s_id(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# --- schema validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [d for d in OBJECTS if d["kind"] not in KEDA_SCHEMAS], ids=k8s_id)
def test_kubernetes_object_validates_strictly(doc: Doc) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_kubernetes_validation_rejects_an_unknown_field() -> None:
    doc = copy.deepcopy(obj("Deployment", "intake"))
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def keda_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(KEDA_SCHEMAS[kind].read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("doc", [d for d in OBJECTS if d["kind"] in KEDA_SCHEMAS], ids=k8s_id)
def test_keda_object_validates_against_its_schema(doc: Doc) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in keda_validator(doc["kind"]).iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "lagTreshold"), "200"),  # the API server would prune it
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "offsetResetPolicy"), "newest"),
        ("ScaledObject", ("spec", "maxReplicaCount"), "6"),
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "sasl"), "scram-sha-512"),
        ("ScaledObject", ("spec", "triggers", 0, "authenticationRef", "kind"), "SecretAuthentication"),
        ("TriggerAuthentication", ("spec", "secretTargetRefs"), []),
        ("TriggerAuthentication", ("spec", "secretTargetRef", 0, "key"), None),  # None: the field removed
        ("TriggerAuthentication", ("spec", "env", 0, "container"), "intake"),
        ("TriggerAuthentication", ("spec", "podIdentity"), {"provider": "vault"}),
    ],
)
def test_keda_schemas_reject_mistakes(kind: str, path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(obj(kind, "intake"))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert not keda_validator(kind).is_valid(doc)


def test_compose_file_validates_against_the_compose_spec() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- kustomization and per-service objects ---------------------------------------------------------------


def test_kustomization_lists_exactly_the_manifests() -> None:
    assert sorted(KUSTOMIZATION["resources"]) == sorted(MANIFESTS)
    namespaces = [d["metadata"]["name"] for d in OBJECTS if d["kind"] == "Namespace"]
    assert namespaces == [KUSTOMIZATION["namespace"]]
    assert [i["name"] for i in KUSTOMIZATION["images"]] == ["orderflow"]


def test_every_service_and_only_services_have_workload_objects() -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "TriggerAuthentication", "ScaledObject"):
        assert sorted(d["metadata"]["name"] for d in OBJECTS if d["kind"] == kind) == sorted(SERVICES), kind


def test_no_secret_values_in_the_repository() -> None:
    assert not [d for d in OBJECTS if d["kind"] == "Secret"]
    assert not [v for v in CONFIG.values() if re.search(r"://[^/\s]*@", v)], "credentials in the ConfigMap"


def test_config_map_keys_are_settings_the_services_read() -> None:
    assert set(CONFIG) <= unprefixed_env_names()


@pytest.mark.parametrize("service", SERVICES)
def test_production_topics_are_replicated_three_times_two_in_sync_with_more_partitions(service: str) -> None:
    prod = settings_from(service, pod_env(service))
    assert (prod.kafka_topic_replication_factor, prod.kafka_topic_min_insync_replicas) == (3, 2)
    assert prod.kafka_topic_partitions > PARTITIONS


def pod_env(service: str) -> dict[str, str]:
    """The container's environment: the ConfigMap (envFrom), then its own literal `env` entries."""
    c = container(service)
    assert c["envFrom"] == [{"configMapRef": {"name": "orderflow-config"}}]
    env = dict(CONFIG)
    for entry in c["env"]:
        assert set(entry) == {"name", "value"}, f"{entry['name']}: only literal values (secrets come as files)"
        env[entry["name"]] = entry["value"]
    return env


def settings_from(service: str, env: dict[str, str]) -> ServiceSettings:
    """The service's settings as its process would read them from exactly `env`."""
    with patch.dict(os.environ, env, clear=True):
        return settings_class(service)()


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_the_service_with_its_settings(service: str) -> None:
    c = container(service)
    assert c["command"] == ["python", "-m", f"services.{service}.app"]
    assert importlib.util.find_spec(f"services.{service}.app") is not None
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert pod_env(service)[f"{service.upper()}_HEALTH_PORT"] == str(port)


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_the_pod_gets_is_a_setting_the_service_reads(service: str) -> None:
    """Settings ignore unknown variables (extra="ignore"): each one must change what the service reads."""
    defaults = settings_from(service, {}).model_dump()
    ignored = [name for name in pod_env(service) if settings_from(service, {name: "7"}).model_dump() == defaults]
    assert ignored == [], f"not read by {settings_class(service).__name__}"


def test_a_variable_no_setting_reads_is_caught() -> None:
    defaults = settings_from("intake", {}).model_dump()
    assert settings_from("intake", {"KAFKA_SECURITY_PROTOCOL": "7"}).model_dump() == defaults
    assert settings_from("intake", {"INTAKE_KAFKA_SASL_USERNAME": "7"}).model_dump() == defaults  # alias wins


@pytest.mark.parametrize("service", SERVICES)
def test_probes_use_paths_the_health_server_serves(service: str) -> None:
    served = {n.value for n in ast.walk(ast.parse(Path(health.__file__).read_text())) if isinstance(n, ast.Constant)}
    c = container(service)
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for probe in probes.values():
        assert probe["path"] in served and probe["port"] == "http"
    annotations = obj("Service", service)["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in served
    assert annotations["prometheus.io/port"] == str(c["ports"][0]["containerPort"])


def graceful_timeout(service: str) -> float:
    """Seconds FastStream waits on SIGTERM for the batch in flight."""
    return make_broker("127.0.0.1:9092", service).config.graceful_timeout or 0.0


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity)
    assert match, f"memory quantity {quantity!r} is not in Mi or Gi"
    return float(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


@pytest.mark.parametrize("service", SERVICES)
def test_pod_is_locked_down_and_sized(service: str) -> None:
    pod = obj("Deployment", service)["spec"]["template"]["spec"]
    c = container(service)
    uid = re.search(r"--uid (\d+)", (DEPLOY / "Dockerfile").read_text())
    assert uid and pod["securityContext"]["runAsUser"] == int(uid.group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    assert 150 <= mebibytes(requests["memory"]) <= mebibytes(limits["memory"])
    assert pod["terminationGracePeriodSeconds"] > graceful_timeout(service) + 10, "SIGTERM: time to finish the batch"


@pytest.mark.parametrize("service", SERVICES)
def test_selectors_agree(service: str) -> None:
    deployment = obj("Deployment", service)["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    selector = deployment["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert obj("PodDisruptionBudget", service)["spec"]["selector"]["matchLabels"] == selector
    assert obj("Service", service)["spec"]["selector"] == selector
    assert "replicas" not in deployment, "KEDA owns the replica count"


@pytest.mark.parametrize("service", SERVICES)
def test_scaledobject_scales_the_service_on_its_group_lag(service: str) -> None:
    spec = obj("ScaledObject", service)["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] == int(CONFIG["KAFKA_TOPIC_PARTITIONS"])  # a replica beyond them would idle
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    consumes = importlib.import_module(f"services.{service}.app").CONSUMES
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(consumes)
    kafka_source = (REPO_ROOT / "services" / "runtime" / "kafka.py").read_text()
    reset = re.search(r'auto_offset_reset="(\w+)"', kafka_source)
    for t in triggers:
        meta = t["metadata"]
        assert meta["consumerGroup"] == CONFIG["KAFKA_GROUP_PREFIX"] + service
        assert meta["bootstrapServers"] == CONFIG["KAFKA_BOOTSTRAP_SERVERS"]
        assert reset and meta["offsetResetPolicy"] == reset.group(1)
        assert int(meta["lagThreshold"]) >= 1


# --- secure mode (docs/adr/0003-security.md) ----------------------------------------------------------


def secret_files(service: str) -> dict[str, tuple[str, str]]:
    """Every file the container sees from a Secret volume: its path -> (Secret name, key)."""
    volumes = {v["name"]: v for v in obj("Deployment", service)["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for mount in container(service)["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret:
            assert secret.get("items"), f"{mount['name']}: name the keys the pod needs, not the whole Secret"
            for item in secret["items"]:
                files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CA certificate (secure mode's local one) to stand in for the operator's."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    material = security.material(tmp_path_factory.mktemp("state"))
    security.ensure_certificates(material)
    return material.ca_cert.read_text()


def kubelet(service: str, root: Path, ca: str) -> tuple[dict[str, str], dict[str, str]]:
    """What the pod sees, with its Secret volumes under `root`: its environment (container paths
    rewritten to `root`) and each Secret file's content (a CA, or a value naming its Secret and key)."""
    files = secret_files(service)
    contents = {}
    for path, (secret, key) in files.items():
        contents[path] = ca if key == "ca.crt" else f"{secret}:{key}\n"
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(contents[path])
    paths = re.compile("|".join(re.escape(p) for p in sorted(files, key=len, reverse=True)))
    env = {name: paths.sub(lambda m: str(root) + m.group(0), value) for name, value in pod_env(service).items()}
    return env, contents


def test_config_selects_sasl_ssl_and_a_tls_store_without_credentials() -> None:
    assert CONFIG["KAFKA_SASL_MECHANISM"] == security.MECHANISM
    assert CONFIG["KAFKA_SSL_CAFILE"], "without a CA file the services fall back to SASL_PLAINTEXT"
    store = urlsplit(CONFIG["MONGODB_URI"])
    options = dict(parse_qsl(store.query))
    assert options["tls"] == "true" and options["tlsCAFile"].startswith("/")
    assert store.username is None and store.password is None, "credentials in MONGODB_URI"
    assert not {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "MONGODB_USERNAME", "MONGODB_PASSWORD"} & set(CONFIG)


@pytest.mark.parametrize("service", SERVICES)
def test_pod_connects_as_its_own_principal_with_password_files(service: str, ca_pem: str, tmp_path: Path) -> None:
    env, contents = kubelet(service, tmp_path, ca_pem)
    assert not {"KAFKA_SASL_PASSWORD", "MONGODB_PASSWORD"} & set(env), "passwords as files, not variables"
    settings = settings_from(service, env)
    kafka = client_kwargs(settings)
    assert kafka["security_protocol"] == "SASL_SSL"
    assert kafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kafka["sasl_plain_username"] == service
    assert kafka["sasl_plain_password"] == contents[pod_env(service)["KAFKA_SASL_PASSWORD_FILE"]].strip()
    context = kafka["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.get_ca_certs(), "the mounted CA is loaded"
    store = settings.mongo_credentials()
    assert store == {"username": service, "password": contents[pod_env(service)["MONGODB_PASSWORD_FILE"]].strip()}
    uri = parse_uri(settings.mongodb_uri)  # opens tlsCAFile: it must be a mounted file
    assert uri["options"]["tls"] is True and uri["username"] is None and uri["password"] is None
    assert Path(uri["options"]["tlsCAFile"]).read_text() == ca_pem


def test_each_service_has_its_own_kafka_and_store_secrets() -> None:
    owners: dict[str, set[str]] = {}
    for service in SERVICES:
        env, files = pod_env(service), secret_files(service)
        for variable in ("KAFKA_SASL_PASSWORD_FILE", "MONGODB_PASSWORD_FILE"):
            owners.setdefault(files[env[variable]][0], set()).add(service)
    assert len(owners) == 2 * len(SERVICES) and all(len(o) == 1 for o in owners.values()), owners


@pytest.mark.parametrize("service", SERVICES)
def test_secret_volumes_are_read_only_and_readable_only_by_the_service_user(service: str) -> None:
    pod = obj("Deployment", service)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in container(service)["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert len(mounts) == 4, "Kafka password and CA, store password and CA"
    for mount in mounts:
        assert mount.get("readOnly") is True, mount["name"]
        mode = volumes[mount["name"]]["secret"]["defaultMode"]
        assert mode & 0o040 and not mode & 0o007, f"{mount['name']}: mode {mode:o}"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def auth_parameters(name: str) -> dict[str, tuple[str, ...]]:
    """A TriggerAuthentication's parameters and where KEDA takes each from."""
    spec = obj("TriggerAuthentication", name)["spec"]
    assert set(spec) <= {"secretTargetRef", "env"}, "only Secrets and the target's environment"
    params = {r["parameter"]: ("secret", r["name"], r["key"]) for r in spec.get("secretTargetRef", [])}
    params |= {r["parameter"]: ("env", r["name"], r.get("containerName", "")) for r in spec.get("env", [])}
    return params


@pytest.mark.parametrize("service", SERVICES)
def test_keda_reads_the_lag_as_the_service_principal(service: str) -> None:
    env, files = pod_env(service), secret_files(service)
    grants = {
        (g.resource, g.name, g.operation)
        for g in security.grants(CONFIG["KAFKA_GROUP_PREFIX"])
        if g.principal == service
    }
    for trigger in obj("ScaledObject", service)["spec"]["triggers"]:
        meta, ref = trigger["metadata"], trigger["authenticationRef"]
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
        assert meta["sasl"] == KEDA_SASL[CONFIG["KAFKA_SASL_MECHANISM"]] and meta["tls"] == "enable"
        params = auth_parameters(ref["name"])
        assert set(params) <= KEDA_KAFKA_AUTH_PARAMS - {"sasl", "tls"}, "KEDA refuses sasl/tls in both places"
        assert params["username"] == ("env", "KAFKA_SASL_USERNAME", container(service)["name"])
        assert env["KAFKA_SASL_USERNAME"] == service
        assert params["password"] == ("secret", *files[env["KAFKA_SASL_PASSWORD_FILE"]])
        assert params["ca"] == ("secret", *files[env["KAFKA_SSL_CAFILE"]])
        # The scaler describes the topic and the group: READ (which implies DESCRIBE) is granted on both.
        assert {("topic", meta["topic"], "READ"), ("group", meta["consumerGroup"], "READ")} <= grants


def test_every_trigger_authentication_is_used() -> None:
    used = {
        t["authenticationRef"]["name"] for d in OBJECTS if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"]
    }
    assert used == {d["metadata"]["name"] for d in OBJECTS if d["kind"] == "TriggerAuthentication"}


def referenced_secrets() -> set[tuple[str, str]]:
    """(Secret, key) of every Secret the manifests read: pod volumes and TriggerAuthentications."""
    out = {ref for service in SERVICES for ref in secret_files(service).values()}
    for d in OBJECTS:
        if d["kind"] == "TriggerAuthentication":
            out |= {(r["name"], r["key"]) for r in d["spec"].get("secretTargetRef", [])}
    return out


def test_config_tells_the_operator_every_secret_to_create() -> None:
    commands = re.findall(
        r"kubectl -n (\S+) create secret generic (\S+) --from-file=([\w.]+)=", (K8S / "config.yaml").read_text()
    )
    documented = set()
    for namespace, name, key in commands:
        assert namespace == KUSTOMIZATION["namespace"]
        documented |= {(name.replace("$s", s), key) for s in SERVICES}
    assert referenced_secrets() == documented


def test_readme_names_every_secret() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name, key in referenced_secrets():
        pattern = re.sub("|".join(SERVICES), "<service>", name)
        assert f"`{pattern}`" in readme and f"`{key}`" in readme, name


def network_peers(peers: list[Doc]) -> list[str]:
    """The namespaces a rule's peers select by name ('*' for anything broader, e.g. no peers at all)."""
    if not peers:
        return ["*"]
    names = []
    for peer in peers:
        labels = peer.get("namespaceSelector", {}).get("matchLabels", {})
        names.append(labels.get("kubernetes.io/metadata.name", "*"))
    return names


def allowed(policies: list[Doc], direction: str) -> set[tuple[str, Any, str]]:
    """(protocol, port, peer namespace) the policies allow in one direction; '*' where a rule is open."""
    out = set()
    for policy in policies:
        for rule in policy["spec"].get(direction, []):
            peers = network_peers(rule.get("from" if direction == "ingress" else "to", []))
            ports = [(p.get("protocol", "TCP"), p.get("port", "*")) for p in rule.get("ports", [])] or [("*", "*")]
            out |= {(protocol, port, peer) for protocol, port in ports for peer in peers}
    return out


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def expected_egress() -> set[tuple[str, Any, str]]:
    """DNS, and the Kafka and store addresses of config.yaml (<service>.<namespace>.svc:<port>)."""
    servers = [host_port(a) for a in CONFIG["KAFKA_BOOTSTRAP_SERVERS"].split(",")]
    servers += [host_port(a) for a in urlsplit(CONFIG["MONGODB_URI"]).netloc.split(",")]
    dns = {("UDP", 53, "kube-system"), ("TCP", 53, "kube-system")}
    return dns | {("TCP", port, host.split(".")[1]) for host, port in servers}


def policies_for(service: str) -> list[Doc]:
    labels = obj("Deployment", service)["spec"]["template"]["metadata"]["labels"]
    out = []
    for policy in (d for d in OBJECTS if d["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        if selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions"):
            out.append(policy)
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_network_policy_lets_only_metrics_in_and_dns_kafka_and_the_store_out(service: str) -> None:
    policies = policies_for(service)
    assert policies, f"no NetworkPolicy selects the {service} pods"
    for policy in policies:
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    port = next(p["containerPort"] for p in container(service)["ports"] if p["name"] == "http")
    assert {(protocol, p) for protocol, p, _ in allowed(policies, "ingress")} == {("TCP", port)}
    assert "*" not in {peer for _, _, peer in allowed(policies, "ingress")}
    assert allowed(policies, "egress") == expected_egress()


def test_an_open_egress_rule_is_caught() -> None:
    policies = copy.deepcopy(policies_for("intake"))
    policies[0]["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 443}]})
    assert allowed(policies, "egress") - expected_egress() == {("TCP", 443, "*")}


# --- compose lint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_runs_its_module_with_a_readiness_check_on_its_port(service: str) -> None:
    svc = COMPOSE["services"][service]
    assert svc["command"] == ["python", "-m", f"services.{service}.app"]
    port = svc["environment"][f"{service.upper()}_HEALTH_PORT"]
    assert f"127.0.0.1:{port}/health/ready" in " ".join(svc["healthcheck"]["test"])
    grace = re.fullmatch(r"(\d+)s", svc["stop_grace_period"])
    assert grace and int(grace.group(1)) > graceful_timeout(service) + 10, "Docker would SIGKILL mid-batch"
    assert set(svc["environment"]) <= unprefixed_env_names() | {f"{s.upper()}_HEALTH_PORT" for s in SERVICES}


def test_compose_dependencies_exist_and_images_are_pinned() -> None:
    services = COMPOSE["services"]
    for name, svc in services.items():
        assert set(svc.get("depends_on", {})) <= set(services), name
        assert "healthcheck" in svc, f"{name} has no healthcheck to wait on"
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    kafka = services["kafka"]["environment"]
    internal = re.search(r"PLAINTEXT://(\S+?)(?:,|$)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    for name in SERVICES:
        assert internal and services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == internal.group(1)


# --- Prometheus and Grafana -------------------------------------------------------------------------------


@functools.cache  # parses every module of the code: once for the tests that ask
def exposed_metric_names() -> frozenset[str]:
    """Names the code exposes: prometheus_client metrics and collector families, with their sample suffixes."""
    suffixes = {
        "Counter": ("_total",),
        "CounterMetricFamily": ("_total",),
        "Histogram": ("_bucket", "_sum", "_count"),
        "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
        "Gauge": ("",),
        "GaugeMetricFamily": ("",),
        "Summary": ("_sum", "_count"),
    }
    names = set()
    for root in CODE_DIRS:
        for path in (REPO_ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                    continue
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if func in suffixes and isinstance(node.args[0].value, str):
                    base = (
                        node.args[0].value.removesuffix("_total") if func.startswith("Counter") else node.args[0].value
                    )
                    names |= {base + s for s in suffixes[func]}
    return frozenset(names)


def test_exposed_metric_names_include_the_service_metrics() -> None:
    names = exposed_metric_names()
    assert {
        "orderflow_messages_handled_total",
        "orderflow_handler_seconds_bucket",
        "orderflow_batch_seconds_count",
    } <= names
    assert health.HANDLED._name + "_total" in names


def dashboard() -> Doc:
    return dict(json.loads((DEPLOY / "grafana" / "orderflow.json").read_text()))


def test_grafana_dashboard_is_well_formed() -> None:
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    for panel in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["expr"] and target["refId"]
            assert target["datasource"]["uid"].strip("${}") in variables


def test_grafana_queries_use_metrics_the_code_exposes() -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(orderflow_[a-z_]+)\b", e)}
    assert used, "the dashboard queries no orderflow metric"
    assert used <= exposed_metric_names(), f"not exposed by the code: {sorted(used - exposed_metric_names())}"


def prometheus() -> Doc:
    return dict(yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text()))


def test_prometheus_config_is_well_formed() -> None:
    jobs = prometheus()["scrape_configs"]
    assert len({j["job_name"] for j in jobs}) == len(jobs)
    for job in jobs:
        assert "kubernetes_sd_configs" in job or "static_configs" in job, job["job_name"]
        for rule in job.get("relabel_configs", []):
            re.compile(rule.get("regex", "(.*)"))
            assert rule.get("action", "replace") in {"keep", "drop", "replace", "labelmap"}
            assert all(label.startswith("__") for label in rule["source_labels"])


def test_prometheus_discovers_the_annotated_services_in_the_namespace() -> None:
    job = next(j for j in prometheus()["scrape_configs"] if "kubernetes_sd_configs" in j)
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [KUSTOMIZATION["namespace"]]
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    annotation = keep["source_labels"][0].removeprefix("__meta_kubernetes_service_annotation_")
    for service in SERVICES:
        annotations = obj("Service", service)["metadata"]["annotations"]
        sanitized = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in annotations.items()}
        assert re.fullmatch(keep["regex"], sanitized[annotation])
    relabelled = {r.get("target_label") for r in job["relabel_configs"]}
    assert "service" not in relabelled, "the services' own `service` label would be overwritten"


def test_prometheus_static_targets_match_compose() -> None:
    job = next(j for j in prometheus()["scrape_configs"] if j["job_name"] == "orderflow-compose")
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {f"{s}:{COMPOSE['services'][s]['environment'][f'{s.upper()}_HEALTH_PORT']}" for s in SERVICES}
    assert targets == expected


def test_prometheus_scrapes_the_dashboard_exporter_on_its_default_port() -> None:
    job = next(j for j in prometheus()["scrape_configs"] if j["job_name"] == "orderflow-lag")
    port = inspect.signature(cli.dashboard_cmd).parameters["port"].default
    assert [t for group in job["static_configs"] for t in group["targets"]] == [f"127.0.0.1:{port}"]
