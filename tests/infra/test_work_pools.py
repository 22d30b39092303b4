"""infra/work-pools and infra/prefect.k8s.yaml: each deployment's Job, as the real worker
renders it, is a valid Kubernetes Job that asks for its pool's GPUs on its nodes.

The Jobs are rendered by prefect-kubernetes' own KubernetesWorkerJobConfiguration (what
a worker runs for each flow run) from the pool's base job template and the deployment's
job_variables, then validated strictly against the Kubernetes schema."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import prefect
import pytest
import yaml
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import Flow as APIFlow
from prefect.client.schemas.objects import FlowRun
from prefect.flows import load_flow_from_entrypoint
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.schema_tools import ValidationError, is_valid_schema, validate
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from offpeak.catalog.pools import load_pools
from offpeak.config import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S_YAML = INFRA / "prefect.k8s.yaml"
DEPLOYMENTS = yaml.safe_load(K8S_YAML.read_text())["deployments"]
LOCAL_DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
POOLS = load_pools(INFRA / "pools.example.yaml")
KUBERNETES = kubernetes_validate.utils.latest_version()
PREFECT_API = "http://prefect-server.offpeak.svc:4200/api"
# prefect-kubernetes 0.7 refuses a template without these two in the pod spec (its own
# default template has them there); the API server drops them as unknown fields.
PREFECT_POD_SPEC_EXTRAS = {"parallelism": 1, "completions": 1}


def template_of(work_pool: str) -> dict[str, Any]:
    """The base job template of a work pool: GPU pools are those of pools.yaml."""
    kind = "gpu" if work_pool in POOLS else "cpu"
    return json.loads((INFRA / "work-pools" / f"{kind}.json").read_text())


def render(deployment: dict[str, Any]) -> tuple[KubernetesWorkerJobConfiguration, FlowRun]:
    """The Job configuration a worker builds for one flow run of ``deployment``."""
    work_pool = deployment["work_pool"]
    flow_run = FlowRun(
        id=uuid.uuid4(),
        name="quiet-otter",
        flow_id=uuid.uuid4(),
        deployment_id=uuid.uuid4(),
        parameters={"job_id": "job_0123"},
    )
    flow = APIFlow(id=flow_run.flow_id, name=deployment["entrypoint"].rsplit(":", 1)[1])
    # The template names no block or variable: the client is handed over, never called.
    client = PrefectClient("http://127.0.0.1:9/api")
    with temporary_settings({PREFECT_API_URL: PREFECT_API}):
        config = asyncio.run(
            KubernetesWorkerJobConfiguration.from_template_and_values(
                template_of(work_pool["name"]), work_pool.get("job_variables", {}), client=client
            )
        )
        config.prepare_for_flow_run(flow_run, flow=flow, worker_name="worker-0")
    return config, flow_run


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_each_deployments_job_is_a_valid_kubernetes_job(deployment: dict[str, Any]) -> None:
    config, flow_run = render(deployment)
    job = copy.deepcopy(config.job_manifest)
    pod = job["spec"]["template"]["spec"]
    assert {key: pod.pop(key) for key in PREFECT_POD_SPEC_EXTRAS} == PREFECT_POD_SPEC_EXTRAS
    kubernetes_validate.validate(job, KUBERNETES, strict=True)

    main = container(job)
    variables = deployment["work_pool"].get("job_variables", {})
    assert main["image"] == variables["image"]
    # The image's entrypoint is `offpeak`: env runs Prefect's command instead.
    assert main["command"] == ["/usr/bin/env"]
    assert main["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    assert env["PREFECT_API_URL"] == PREFECT_API
    assert main["envFrom"] == [{"configMapRef": {"name": "offpeak-env"}}]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts["/var/run/secrets/offpeak"] == "secrets"
    assert mounts["/var/lib/offpeak/cache"] == "model-cache"  # the image's caches
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "offpeak-secrets"
    assert volumes["catalog"]["configMap"]["name"] == "offpeak-catalog"
    assert "model-cache" in volumes
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    # The network policies let only pods with this label reach PostgreSQL and S3.
    assert job["spec"]["template"]["metadata"]["labels"]["offpeak.io/member"] == "true"
    assert job["spec"]["backoffLimit"] == 0  # the scheduler relaunches a failed job
    # A cold GPU node takes minutes to start a pod (Prefect issue 12071).
    assert config.pod_watch_timeout_seconds >= 900


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_gpu_pools_job_asks_for_the_pools_gpus_on_gpu_nodes(pool: str) -> None:
    (deployment,) = [d for d in DEPLOYMENTS if d["work_pool"]["name"] == pool]
    config, _ = render(deployment)
    pod = config.job_manifest["spec"]["template"]["spec"]
    resources = container(config.job_manifest)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == POOLS[pool].gpus
    assert resources["limits"]["nvidia.com/gpu"] == POOLS[pool].gpus
    assert pod["nodeSelector"] == deployment["work_pool"]["job_variables"]["node_selector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_the_cpu_pools_job_asks_for_no_gpu() -> None:
    (deployment,) = [d for d in DEPLOYMENTS if d["name"] == "scheduler"]
    config, _ = render(deployment)
    resources = container(config.job_manifest)["resources"]
    assert "nvidia.com/gpu" not in resources["requests"] | resources["limits"]
    assert config.job_manifest["spec"]["template"]["spec"]["tolerations"] == []


def test_job_variables_override_the_templates_defaults() -> None:
    deployment = copy.deepcopy(next(d for d in DEPLOYMENTS if d["work_pool"]["name"] in POOLS))
    deployment["work_pool"]["job_variables"] |= {
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm"}],
        "model_cache_volume": {"name": "model-cache", "persistentVolumeClaim": {"claimName": "w"}},
        "pod_watch_timeout_seconds": 2400,
    }
    config, _ = render(deployment)
    pod = config.job_manifest["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "llm"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "w"}
    assert config.pod_watch_timeout_seconds == 2400


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_templates_keep_every_variable_of_the_default_one(kind: str) -> None:
    """A variable the worker's default template offers (cluster_config, stream_output, ...)
    is not lost by our template; the pod watch timeout may not go under 15 minutes."""
    template = json.loads((INFRA / "work-pools" / f"{kind}.json").read_text())
    default = KubernetesWorker.get_default_base_job_template()
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    assert set(default["job_configuration"]) == set(template["job_configuration"])
    assert template["variables"]["properties"]["pod_watch_timeout_seconds"]["minimum"] >= 900
    for name, variable in template["variables"]["properties"].items():
        assert variable.get("description"), f"{kind}.json: variable {name} needs a description"


@pytest.mark.parametrize("kind", ["gpu", "cpu"])
def test_the_prefect_server_accepts_each_template(kind: str) -> None:
    """What `prefect work-pool create --base-job-template` has the server check."""
    template = json.loads((INFRA / "work-pools" / f"{kind}.json").read_text())
    WorkPoolCreate(name=kind, type="kubernetes", base_job_template=template)
    is_valid_schema(template["variables"], preprocess=False)


def job_variables_check(work_pool: str, job_variables: dict[str, Any]) -> None:
    """The check `prefect deploy` has the server make: the template's defaults with the
    deployment's job_variables over them, against the template's variables schema."""
    schema = template_of(work_pool)["variables"]
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    validate(
        defaults | job_variables,
        schema,
        raise_on_error=True,
        preprocess=True,
        ignore_required=False,
        allow_none_with_default=True,
    )


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_each_deployments_job_variables_fit_its_pools_template(deployment: dict[str, Any]) -> None:
    work_pool = deployment["work_pool"]
    job_variables_check(work_pool["name"], work_pool.get("job_variables", {}))


@pytest.mark.parametrize(
    "bad", [{"gpu_count": 0}, {"pod_watch_timeout_seconds": 60}, {"node_selector": ["gpu"]}]
)
def test_a_job_variable_outside_the_template_schema_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        job_variables_check(next(iter(POOLS)), {"image": "offpeak:gpu", **bad})


def test_each_pool_has_its_inference_deployment_and_no_other() -> None:
    inference = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows.inference:inference"]
    flow_name = load_flow_from_entrypoint("flows.inference:inference").name
    assert {f"{flow_name}/{d['name']}" for d in inference} == {
        pool.deployment for pool in POOLS.values()
    }
    for deployment in inference:
        pool = POOLS[deployment["work_pool"]["name"]]
        assert pool.deployment == f"{flow_name}/{deployment['name']}"
        assert deployment["work_pool"]["job_variables"]["gpu_count"] == pool.gpus
        assert deployment["work_pool"]["job_variables"]["image"].endswith("-gpu")


def test_the_other_deployments_are_those_of_prefect_yaml() -> None:
    """scheduler, publish and gc run the same flows with the same limits as on one machine."""
    local = {
        d["name"]: d for d in LOCAL_DEPLOYMENTS if d["entrypoint"] != "flows.inference:inference"
    }
    cluster = {d["name"]: d for d in DEPLOYMENTS if d["entrypoint"] != "flows.inference:inference"}
    assert cluster.keys() == local.keys()
    for name, deployment in cluster.items():
        for key in ("entrypoint", "concurrency_limit"):
            assert deployment.get(key) == local[name].get(key), (name, key)
        assert deployment["work_pool"]["name"] == "offpeak"
        assert deployment["work_pool"]["job_variables"]["image"].endswith("-cpu")
    assert cluster["gc"]["schedules"] == local["gc"]["schedules"]
    # `offpeak serve` sets an interval of OFFPEAK_SCHEDULER_INTERVAL; the cluster ticks as often.
    (tick,) = cluster["scheduler"]["schedules"]
    assert tick["interval"] == Settings.model_fields["scheduler_interval"].default
    assert tick.get("active", True)


def test_runs_start_in_the_images_writable_workdir() -> None:
    """With no pull step, `prefect deploy` has Kubernetes runs change to /opt/prefect (seen
    deploying this file to a Prefect server), which offpeak's image lacks: the explicit
    step names the image's WORKDIR, where both templates mount the data volume."""
    (step,) = yaml.safe_load(K8S_YAML.read_text())["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    dockerfile = (INFRA / "Dockerfile").read_text().splitlines()
    assert directory == [line.split()[1] for line in dockerfile if line.startswith("WORKDIR ")][-1]
    for kind in ("gpu", "cpu"):
        job = json.loads((INFRA / "work-pools" / f"{kind}.json").read_text())
        mounts = container(job["job_configuration"]["job_manifest"])["volumeMounts"]
        assert {"name": "data", "mountPath": directory} in mounts, kind


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_resolves_to_a_flow(deployment: dict[str, Any]) -> None:
    flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
    assert isinstance(flow, prefect.Flow)


def test_prefect_versions_agree() -> None:
    """The workers' image, the deployments and the installed Prefect are one version."""
    version = prefect.__version__
    assert yaml.safe_load(K8S_YAML.read_text())["prefect-version"] == version
    assert yaml.safe_load((ROOT / "prefect.yaml").read_text())["prefect-version"] == version
    image = yaml.safe_load((INFRA / "helm" / "worker.yaml").read_text())["worker"]["image"]
    assert image["prefectTag"].startswith(f"{version}-python3.11-")


def test_each_work_pool_has_its_worker_values() -> None:
    work_pools = {d["work_pool"]["name"] for d in DEPLOYMENTS}
    files = {p.name for p in (INFRA / "helm").glob("worker-*.yaml")}
    assert files == {f"worker-{pool}.yaml" for pool in work_pools}
    for pool in work_pools:
        values = yaml.safe_load((INFRA / "helm" / f"worker-{pool}.yaml").read_text())
        assert values["worker"]["config"]["workPool"] == pool
        assert values["fullnameOverride"] == f"prefect-worker-{pool}"
    common = yaml.safe_load((INFRA / "helm" / "worker.yaml").read_text())["worker"]
    assert common["config"]["type"] == "kubernetes"
    assert common["serverApiConfig"]["apiUrl"] == PREFECT_API
    assert common["podLabels"]["offpeak.io/member"] == "true"


def test_the_guide_creates_each_work_pool_from_its_template() -> None:
    guide = (INFRA / "README.md").read_text()
    for pool in {d["work_pool"]["name"] for d in DEPLOYMENTS}:
        kind = "gpu" if pool in POOLS else "cpu"
        assert (
            f"prefect work-pool create {pool} --type kubernetes "
            f"--base-job-template infra/work-pools/{kind}.json --overwrite"
        ) in guide, pool
        assert f"-f infra/helm/worker.yaml -f infra/helm/worker-{pool}.yaml" in guide, pool
    for name, pool in POOLS.items():
        assert f"prefect work-pool set-concurrency-limit {name} {pool.max_concurrent_jobs}" in (
            guide
        )
    assert "prefect --no-prompt deploy --all --prefect-file infra/prefect.k8s.yaml" in guide
