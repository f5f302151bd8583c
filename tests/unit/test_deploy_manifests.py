"""deploy/: Kubernetes manifests, KEDA ScaledObjects, compose, Prometheus and Grafana, validated offline and
checked against the code they deploy (topics, consumer groups, partitions, settings, probes, metric names)."""

import ast
import copy
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from orderflow import cli
from orderflow.procs import SERVICES
from orderflow.stack import REPO_ROOT
from services.runtime import health
from services.runtime.kafka import PARTITIONS, make_broker
from services.runtime.settings import ServiceSettings

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.37.0"  # the newest schemas bundled with the pinned kubernetes-validate
KEDA_SCHEMA = K8S / "schemas" / "keda-scaledobject-v1alpha1.json"
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


@pytest.mark.parametrize("doc", [d for d in OBJECTS if d["kind"] != "ScaledObject"], ids=k8s_id)
def test_kubernetes_object_validates_strictly(doc: Doc) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_kubernetes_validation_rejects_an_unknown_field() -> None:
    doc = copy.deepcopy(obj("Deployment", "intake"))
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("doc", [d for d in OBJECTS if d["kind"] == "ScaledObject"], ids=k8s_id)
def test_scaledobject_validates_against_the_keda_schema(doc: Doc) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in keda_validator().iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "triggers", 0, "metadata", "lagTreshold"), "200"),  # a typo the API server would prune
        (("spec", "triggers", 0, "metadata", "offsetResetPolicy"), "newest"),
        (("spec", "maxReplicaCount"), "6"),
    ],
)
def test_keda_schema_rejects_mistakes(path: tuple[Any, ...], value: str) -> None:
    doc = copy.deepcopy(obj("ScaledObject", "intake"))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not keda_validator().is_valid(doc)


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
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        assert sorted(d["metadata"]["name"] for d in OBJECTS if d["kind"] == kind) == sorted(SERVICES), kind


def test_no_secret_values_in_the_repository() -> None:
    assert not [d for d in OBJECTS if d["kind"] == "Secret"]
    assert not [v for v in CONFIG.values() if re.search(r"://[^/\s]*@", v)], "credentials in the ConfigMap"


def test_config_map_keys_are_settings_the_services_read() -> None:
    assert set(CONFIG) <= unprefixed_env_names()


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_runs_the_service_with_its_settings(service: str) -> None:
    c = container(service)
    assert c["command"] == ["python", "-m", f"services.{service}.app"]
    assert importlib.util.find_spec(f"services.{service}.app") is not None
    assert c["envFrom"] == [{"configMapRef": {"name": "orderflow-config"}}]
    env = {e["name"]: e for e in c["env"]}
    secret = env.pop("MONGODB_URI")["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]
    fields = settings_class(service).model_fields
    prefix = f"{service.upper()}_"
    for name in env:
        assert name.startswith(prefix) and name.removeprefix(prefix).lower() in fields, name
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    assert env[f"{prefix}HEALTH_PORT"]["value"] == str(port)


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
    assert spec["maxReplicaCount"] == PARTITIONS
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


def exposed_metric_names() -> set[str]:
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
    return names


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
