"""The container image (infra/Dockerfile): built as `make image` builds it, then run as an
operator runs it, against the test run's PostgreSQL, S3 and Prefect servers.

The image is built on a Debian bookworm base made here (no registry is reachable), by a
Docker engine started here with the host's network only: the containers reach PostgreSQL,
S3 and each other on loopback. See tests/infra/docker_engine.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from offpeak.clock import now
from offpeak.engine.tiny import build_tiny
from offpeak.plan.pending import PendingGroup
from offpeak.run.launch import open_job
from offpeak.schemas import JobStatus
from offpeak.state import jobs
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import Request
from offpeak.storage import S3Store
from tests.conftest import new_postgres_database, new_s3_url
from tests.infra import docker_engine
from tests.infra.docker_engine import DOCKER, REPO, docker_env, run
from tests.utils.services import free_port, wait_for

# A cold build takes minutes on two cores; the fixtures' time counts against the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

IMAGE = "offpeak-test:cpu"
MODEL = "tiny-chat"


@pytest.fixture(scope="module")
def docker_host() -> Iterator[str]:
    with docker_engine.docker_engine() as host:
        yield host


@pytest.fixture(scope="module")
def image(docker_host: str) -> str:
    """The CPU image, built by `make image` (cached layers are reused across runs)."""
    base = docker_engine.ensure_base_image(docker_host)
    wheels = docker_engine.ensure_wheels_image(docker_host)
    args = [
        "make",
        "-C",
        str(REPO),
        "--no-print-directory",
        "image",
        f"DOCKER={DOCKER}",
        f"IMAGE={IMAGE}",
        f"BASE_IMAGE={base}",
        f"TORCH_WHEELS={wheels}",
    ]
    # pip in the build trusts what this machine trusts (a TLS-inspecting proxy's CA).
    if bundle := ssl.get_default_verify_paths().cafile:
        args.append(f"CA_BUNDLE={bundle}")
    started = time.monotonic()
    subprocess.run(args, env=docker_env(docker_host), check=True, timeout=3000)
    print(f"image built in {time.monotonic() - started:.0f}s")
    # The engine's data root is kept across runs: drop what earlier builds left behind
    # (images a rebuild untagged, cache beyond what a rebuild of this image needs).
    for prune in (
        ["image", "prune", "--force"],
        ["builder", "prune", "--force", "--keep-storage", "10GB"],
    ):
        run([DOCKER, *prune], env=docker_env(docker_host))
    return IMAGE


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model, built on the host: the image carries no weights."""
    model = build_tiny(tmp_path_factory.mktemp("models") / MODEL)
    # Readable by the image's non-root user, as a mounted model volume must be.
    for path in [model, *model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return model


@dataclass
class Deployment:
    """The test's services and what a container needs to reach them."""

    docker_host: str
    image: str
    env: dict[str, str]
    db: Database
    store: S3Store

    def docker(self, *args: str, timeout: float = 600) -> str:
        return run([DOCKER, *args], env=docker_env(self.docker_host), timeout=timeout)

    def logs(self, container: str) -> str:
        """A container's output, stdout and stderr together."""
        done = subprocess.run(
            [DOCKER, "logs", container],
            env=docker_env(self.docker_host),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        return done.stdout

    def run_args(self) -> list[str]:
        """`docker run` options of every container: host network, the settings as env."""
        options = ["--network", "host"]
        for name, value in self.env.items():
            options += ["--env", f"{name}={value}"]
        return options


@pytest.fixture(scope="module")
def deployment(
    image: str, docker_host: str, postgres_root: str, s3_endpoint: str
) -> Iterator[Deployment]:
    """A fresh PostgreSQL database and S3 prefix, migrated by the image (`offpeak db
    upgrade`, the migration Job's command)."""
    storage_url = new_s3_url()
    env = {
        "OFFPEAK_DATABASE_URL": new_postgres_database(postgres_root),
        "OFFPEAK_STORAGE_URL": storage_url,
        "OFFPEAK_S3_ENDPOINT_URL": s3_endpoint,
        "OFFPEAK_SEAL_INTERVAL": "0.3",
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    store = S3Store(storage_url, endpoint_url=s3_endpoint, region="us-east-1")
    store.ensure_bucket()
    upgrade = [DOCKER, "run", "--rm", "--network", "host", "--env", "OFFPEAK_DATABASE_URL"]
    run([*upgrade, image, "db", "upgrade"], env={**docker_env(docker_host), **env})
    found = Deployment(docker_host, image, env, Database(env["OFFPEAK_DATABASE_URL"]), store)
    try:
        yield found
    finally:
        found.db.dispose()


@pytest.fixture(scope="module")
def api(deployment: Deployment) -> Iterator[str]:
    """`offpeak api` running in a container of the image; its base URL."""
    port = free_port()
    name = f"offpeak-api-{uuid.uuid4().hex[:8]}"
    deployment.docker(
        "run",
        "--detach",
        "--name",
        name,
        *deployment.run_args(),
        deployment.image,
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    base_url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        state = deployment.docker("inspect", "--format", "{{.State.Running}}", name).strip()
        if state != "true":
            raise AssertionError(f"the API container stopped:\n{deployment.logs(name)}")
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200

    try:
        wait_for(up, "the API in its container", timeout=120)
        yield base_url
    finally:
        deployment.docker("rm", "--force", "--volumes", name)


@pytest.fixture(scope="module")
def pool(prefect_api: str) -> str:
    """A process work pool of the test run's Prefect server, with the inference
    deployment on it."""
    name = f"image-{uuid.uuid4().hex[:8]}"
    with prefect_at(prefect_api), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        flow_id = client.create_flow_from_name("inference")
        client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint="flows.inference:inference",
            work_pool_name=name,
            # Nothing to pull: the flows are part of the installed package. Without a
            # pull step Prefect would copy the code from the deployment's `path`.
            pull_steps=[
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": "/var/lib/offpeak"
                    }
                }
            ],
            enforce_parameter_schema=False,
        )
    return name


def prefect_at(api_url: str) -> contextlib.AbstractContextManager[object]:
    """This process's Prefect client pointed at the test run's server (settings are read
    once, at import: setting PREFECT_API_URL afterwards is not enough)."""
    return temporary_settings(updates={PREFECT_API_URL: api_url})


def wait_final(flow_run_id: UUID, timeout: float) -> State:
    """The flow run's state once it is final."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return state
            assert time.monotonic() < deadline, f"the flow run is still {state} after {timeout}s"
            time.sleep(2)


def submit(base_url: str, key: str, content: str) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    response = httpx.post(
        f"{base_url}/v1/requests",
        json={"request_body": body, "metadata": {"custom_id": content}},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    request_id: str = response.json()["id"]
    return request_id


def test_image_runs_offpeak_as_a_non_root_user(deployment: Deployment) -> None:
    config = json.loads(deployment.docker("image", "inspect", deployment.image))[0]["Config"]
    assert config["Entrypoint"] == ["offpeak"]
    assert config["User"] == "10001:10001"
    whoami = deployment.docker("run", "--rm", "--entrypoint", "id", deployment.image, "-u")
    assert whoami.strip() == "10001"
    # The same image is a Prefect worker: `--entrypoint prefect worker start ...`.
    help_text = deployment.docker(
        "run", "--rm", "--entrypoint", "prefect", deployment.image, "worker", "start", "--help"
    )
    assert "--pool" in help_text


def test_api_from_the_image_is_ready_and_accepts_a_request(
    deployment: Deployment, api: str
) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    key = create_key(deployment.db, "image", 1.0)[1]
    request_id = submit(api, key, "hello from a container")
    got = httpx.get(f"{api}/v1/requests/{request_id}", headers={"X-API-Key": key}).json()
    assert got["status"] == "registered"
    assert got["request_body"]["messages"][0]["content"] == "hello from a container"


def test_inference_job_runs_from_the_image(
    deployment: Deployment, api: str, tiny_model: Path, pool: str, prefect_api: str
) -> None:
    key = create_key(deployment.db, "image-job", 1.0)[1]
    ids = [submit(api, key, f"prompt {i}") for i in range(2)]

    def sealed() -> bool:
        with deployment.db.session() as session:
            rows = [session.get(Request, request_id) for request_id in ids]
        return all(row is not None and row.segment for row in rows)

    wait_for(sealed, "the API sealing the requests", timeout=30)
    # What the scheduler's `open_launch` does: a manifest of the pending requests, a job.
    job = open_job(
        deployment.db,
        deployment.store,
        PendingGroup(MODEL, (MODEL,), ()),
        max_requests=10,
        deployment=f"inference/{pool}",
        at=now(),
    )
    # (with any request another test left waiting on this database)
    assert job is not None and job.request_count >= len(ids)
    # The scheduler's `launch_job`: a flow run of the pool's inference deployment, which
    # a Prefect worker running from the image picks up and runs in its own process.
    with prefect_at(prefect_api):
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
            name=f"inference/{pool}", parameters={"job_id": job.id}, timeout=0, as_subflow=False
        )
    worker = f"offpeak-worker-{uuid.uuid4().hex[:8]}"
    deployment.docker(
        "run",
        "--detach",
        "--name",
        worker,
        *deployment.run_args(),
        "--env",
        f"PREFECT_API_URL={prefect_api}",
        "--env",
        "OFFPEAK_MODELS_DIR=/models",
        "--volume",
        f"{tiny_model}:/models/{MODEL}:ro",
        "--entrypoint",
        "prefect",
        deployment.image,
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        "process",
    )
    try:
        with prefect_at(prefect_api):
            state = wait_final(flow_run.id, timeout=900)
        logs = deployment.logs(worker)
    finally:
        deployment.docker("rm", "--force", "--volumes", worker)
    assert state.is_completed(), f"{state}\n{logs[-4000:]}"
    assert jobs.get_job(deployment.db, job.id).status == JobStatus.COMPLETED
    with httpx.Client(base_url=api, headers={"X-API-Key": key}) as client:
        for request_id in ids:
            got = client.get(f"/v1/requests/{request_id}").json()
            assert got["status"] == "completed", got
            usage = got["result_body"]["usage"]
            assert 1 <= usage["completion_tokens"] <= 8
            assert got["result_body"]["choices"][0]["message"]["role"] == "assistant"
