"""infra/k8s: the example overlay renders with kustomize (`kubectl kustomize`, as the
guide runs it), every object is valid against the current Kubernetes schema, and the
objects fit together: probes on the API's real endpoints, restricted pods, Secrets the
settings read as files, network policies, Prefect's production topology."""

from __future__ import annotations

import base64
import copy
import importlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import click
import kubernetes_validate
import pytest
import yaml
from prefect.settings import Settings as PrefectSettings

from api_adapter.service import router
from offpeak.catalog.pools import load_pools
from offpeak.cli import main as cli
from offpeak.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
OVERLAY = "infra/k8s/example"
KUBECTL = shutil.which("kubectl") or "kubectl"  # `make kustomize` checks it has kustomize v5
KUBERNETES = kubernetes_validate.utils.latest_version()
POD_OWNERS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
# The guide's migration step: the Jobs and the configuration they read, before the rest.
MIGRATION_STEP = "app.kubernetes.io/component in (config, migrate)"


def kustomize(path: str) -> list[dict[str, Any]]:
    """The objects ``path`` renders to, by the command the guide gives."""
    out = subprocess.run(
        [KUBECTL, "kustomize", path], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return kustomize(OVERLAY)


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in POD_OWNERS:
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]


def test_every_object_is_valid_against_the_kubernetes_schema(
    objects: list[dict[str, Any]],
) -> None:
    problems = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{o['kind']}/{o['metadata']['name']}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert len(objects) > 20
    assert {o["metadata"]["namespace"] for o in objects} == {"offpeak"}


def test_the_validation_refuses_an_unknown_or_misplaced_field(
    objects: list[dict[str, Any]],
) -> None:
    """The check above can fail: strict validation names a field Kubernetes would drop."""
    api = copy.deepcopy(one(objects, "Deployment", "offpeak-api"))
    api["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(api, KUBERNETES, strict=True)


def test_the_api_runs_two_replicas_probed_on_its_health_endpoints(
    objects: list[dict[str, Any]],
) -> None:
    api = one(objects, "Deployment", "offpeak-api")
    assert api["spec"]["replicas"] == 2
    (main,) = api["spec"]["template"]["spec"]["containers"]
    assert main["args"] == ["api"]
    routes = {route.path for route in router.routes}  # type: ignore[attr-defined]
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= routes
    env = one(objects, "ConfigMap", "offpeak-env")["data"]
    (port,) = main["ports"]
    assert port["containerPort"] == int(env["OFFPEAK_API_PORT"])
    assert env["OFFPEAK_API_HOST"] == "0.0.0.0"  # reachable from the Service, not loopback


def test_service_pdb_and_autoscaler_all_target_the_api(objects: list[dict[str, Any]]) -> None:
    api = one(objects, "Deployment", "offpeak-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", "offpeak-api")
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = one(objects, "PodDisruptionBudget", "offpeak-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < api["spec"]["replicas"]  # a drain can proceed
    hpa = one(objects, "HorizontalPodAutoscaler", "offpeak-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "offpeak-api",
    }
    assert hpa["spec"]["minReplicas"] >= api["spec"]["replicas"]
    # Every container of a pod the HPA scales on CPU asks for CPU.
    assert all(
        c["resources"]["requests"]["cpu"] for c in api["spec"]["template"]["spec"]["containers"]
    )
    ingress = one(objects, "Ingress", "offpeak-api")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "offpeak-api", "port": {"name": "http"}}


def test_the_migration_job_runs_offpeak_db_upgrade(objects: list[dict[str, Any]]) -> None:
    job = one(objects, "Job", "offpeak-db-upgrade")
    (main,) = job["spec"]["template"]["spec"]["containers"]
    assert main["args"] == ["db", "upgrade"]
    ctx = click.Context(cli)
    db = cli.get_command(ctx, "db")
    assert isinstance(db, click.Group) and db.get_command(ctx, "upgrade") is not None


def test_the_migration_step_applies_all_the_jobs_need(objects: list[dict[str, Any]]) -> None:
    """`kubectl apply -l` of the guide's migration step selects each migration Job with
    the service account, ConfigMaps and Secrets it reads, and nothing that serves."""
    selected = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in ("config", "migrate")
    }
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert {("Job", "offpeak-db-upgrade"), ("Job", "prefect-db-upgrade")} <= selected
    assert not {kind for kind, _ in selected} & {"Deployment", "Service", "NetworkPolicy"}
    for job in jobs:
        spec = job["spec"]["template"]["spec"]
        needs = {("ServiceAccount", spec["serviceAccountName"])}
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    needs.add(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    needs.add(("Secret", source["secretRef"]["name"]))
        for volume in spec["volumes"]:
            if "configMap" in volume:
                needs.add(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                needs.add(("Secret", volume["secret"]["secretName"]))
        assert needs <= selected, (job["metadata"]["name"], needs - selected)


def test_every_pod_is_restricted(objects: list[dict[str, Any]]) -> None:
    """Pod Security Standards, `restricted` profile, with a read-only root: every path
    a process writes is a volume."""
    for name, template in pods(objects):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, name
            assert c["resources"]["limits"]["memory"], name
        assert all("hostPath" not in v for v in spec.get("volumes", [])), name


def test_offpeak_pods_read_their_settings_from_the_configmaps_and_the_secret_files(
    objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each volume of the API pod laid out as Kubernetes would (ConfigMap and Secret
    keys as files), its environment from the ConfigMap: the settings load, with the
    database URL from the Secret's file and S3 keys from its credentials file."""
    template = one(objects, "Deployment", "offpeak-api")["spec"]["template"]["spec"]
    (main,) = template["containers"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    where: dict[str, Path] = {}  # mount path in the pod -> folder here
    secret = {}
    for volume in template["volumes"]:
        folder = where[mounts[volume["name"]]] = tmp_path / volume["name"]
        folder.mkdir()
        if "configMap" in volume:
            for key, text in one(objects, "ConfigMap", volume["configMap"]["name"])["data"].items():
                (folder / key).write_text(text)
        if "secret" in volume:
            data = one(objects, "Secret", volume["secret"]["secretName"])["data"]
            secret = {key: base64.b64decode(value).decode() for key, value in data.items()}
            for key, text in secret.items():
                (folder / key).write_text(text)

    def local(value: str) -> str:
        for mount, folder in where.items():
            if value == mount or value.startswith(mount + "/"):
                return str(folder) + value[len(mount) :]
        return value

    # The pod's environment is the ConfigMap's alone, not this machine's.
    for name in list(os.environ):
        if name.startswith(("OFFPEAK_", "AWS_")):
            monkeypatch.delenv(name)
    (env_from,) = main["envFrom"]
    for name, value in one(objects, "ConfigMap", env_from["configMapRef"]["name"])["data"].items():
        monkeypatch.setenv(name, local(value))

    settings = load_settings()
    assert settings.database_url == secret["database-url"]
    assert settings.storage_url.startswith("s3://")
    assert load_pools(settings.pools_path) == load_pools(ROOT / "infra" / "pools.example.yaml")
    credentials = boto3.Session().get_credentials()
    assert credentials is not None and credentials.access_key == "CHANGE-ME"
    # Every Secret mounted for the API is mounted the same way by the migration Job.
    job = one(objects, "Job", "offpeak-db-upgrade")["spec"]["template"]["spec"]
    assert {m["mountPath"] for m in job["containers"][0]["volumeMounts"]} >= {
        mounts["secrets"],
        mounts["catalog"],
    }


def test_the_overlays_catalog_is_the_example_one() -> None:
    """kustomize reads no file above the overlay: it holds copies of the examples."""
    for name in ("models", "pools"):
        copied = (K8S / "example" / f"{name}.yaml").read_text()
        assert copied == (ROOT / "infra" / f"{name}.example.yaml").read_text(), name


def test_only_the_ingress_reaches_the_api_and_only_offpeak_reaches_the_data(
    objects: list[dict[str, Any]],
) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    api_labels = one(objects, "Deployment", "offpeak-api")["spec"]["template"]["metadata"]["labels"]
    to_api = [
        p for p in policies.values()
        if "Ingress" in p["policyTypes"]
        and p["podSelector"].get("matchLabels", {}).items() <= api_labels.items()
        and p.get("ingress")
    ]  # fmt: skip
    assert [p["ingress"] for p in to_api] == [
        [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 8000}],
            }
        ]
    ]
    member = {"offpeak.io/member": "true"}
    for store, port in (("postgresql", 5432), ("minio", 9000)):
        (policy,) = [
            p for p in policies.values()
            if p["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": store}}
        ]  # fmt: skip
        assert policy["ingress"] == [
            {
                "from": [{"podSelector": {"matchLabels": member}}],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ]
    # The data egress is granted to offpeak's pods only, and all of them carry the label.
    egress = policies["offpeak-egress-to-data"]
    assert egress["podSelector"] == {"matchLabels": member}
    assert {p["port"] for p in egress["egress"][0]["ports"]} >= {5432, 443}
    for name, template in pods(objects):
        assert template["metadata"]["labels"].items() >= member.items(), name


def test_prefect_runs_api_servers_without_services_and_one_services_process(
    objects: list[dict[str, Any]],
) -> None:
    server = one(objects, "Deployment", "prefect-server")
    (api,) = server["spec"]["template"]["spec"]["containers"]
    assert api["command"] == ["prefect"]
    assert api["args"][:2] == ["server", "start"] and "--no-services" in api["args"]
    assert server["spec"]["replicas"] >= 2
    services = one(objects, "Deployment", "prefect-services")
    assert services["spec"]["replicas"] == 1
    assert services["spec"]["strategy"]["type"] == "Recreate"
    (loop,) = services["spec"]["template"]["spec"]["containers"]
    assert loop["args"] == ["server", "services", "start"]
    (migrate,) = one(objects, "Job", "prefect-db-upgrade")["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["server", "database", "upgrade", "-y"]


def test_prefect_reads_its_redis_and_postgresql_settings_as_configured(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting names are the installed Prefect's, and each module they name imports."""
    env = dict(one(objects, "ConfigMap", "prefect-env")["data"])
    for key, value in one(objects, "Secret", "prefect-secrets")["data"].items():
        env[key] = base64.b64decode(value).decode()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = PrefectSettings().server
    assert server.database.migrate_on_start is False
    assert server.database.connection_url is not None
    assert server.database.connection_url.get_secret_value().startswith("postgresql+asyncpg://")
    assert server.events.messaging_broker == "prefect_redis.messaging"
    assert server.events.messaging_cache == "prefect_redis.messaging"
    assert server.events.causal_ordering == "prefect_redis.ordering"
    assert server.concurrency.lease_storage == "prefect_redis.lease_storage"
    assert server.docket.url.startswith("redis://")
    # The UI, reached through the guide's port-forward, calls the API there.
    assert server.ui.api_url == "http://127.0.0.1:4200/api"
    for module in {
        server.events.messaging_broker,
        server.events.messaging_cache,
        server.events.causal_ordering,
        server.concurrency.lease_storage,
    }:
        importlib.import_module(module)
    from prefect_redis.client import RedisMessagingSettings

    assert RedisMessagingSettings().url == env["PREFECT_REDIS_MESSAGING_URL"]


def test_the_guide_renders_and_applies_the_overlay_the_tests_render() -> None:
    guide = (ROOT / "infra" / "README.md").read_text()
    assert f"kubectl kustomize {OVERLAY}" in guide
    assert f"kubectl apply -k {OVERLAY} -l '{MIGRATION_STEP}'" in guide
    assert f"kubectl apply -k {OVERLAY}\n" in guide
    assert "kubectl -n offpeak port-forward svc/prefect-server 4200:4200" in guide
