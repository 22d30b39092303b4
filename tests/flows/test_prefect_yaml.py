"""prefect.yaml stays in step with the code: every entrypoint resolves to a flow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
DEPLOYMENTS = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_resolves_to_a_flow(deployment: dict[str, object]) -> None:
    flow = load_flow_from_entrypoint(str(deployment["entrypoint"]), use_placeholder_flow=False)
    assert isinstance(flow, Flow)
    assert flow.description, f"{flow.name} needs a docstring: it shows in the Prefect UI"


def test_every_task_retries_only_transient_errors() -> None:
    from tasks import inference, publishing, scheduling

    for module in (scheduling, publishing):
        for name in dir(module):
            task = getattr(module, name)
            if getattr(task, "retries", 0):
                assert task.retry_condition_fn is not None, name
    assert inference.run_job.retries == 0  # a failed job is relaunched by the scheduler


def test_the_control_flows_have_a_pool_of_their_own() -> None:
    # As in production (infra/prefect.k8s.yaml): a GPU pool runs inference jobs only.
    pools = {d["name"]: d["work_pool"]["name"] for d in DEPLOYMENTS}
    assert {pools[name] for name in ("scheduler", "publish", "gc")} == {"control"}
    assert pools["local"] == "local"
