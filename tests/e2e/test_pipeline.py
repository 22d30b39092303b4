"""End to end through the real deployments, a worker and vLLM on CPU:
API -> segment -> scheduler -> inference deployment -> publish -> JSONL via the API."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from offpeak.schemas import CarbonObject, RequestObject
from offpeak.state.models import ApiKey, Job, Request
from tests.e2e.conftest import CHUNK_SIZE, Stack
from tests.utils import exxa_snippets as snippets
from tests.utils.exxa_snippets import printed, run_snippet
from tests.utils.services import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MODEL = "llama-3.1-70b-instruct-fp16"
# Far longer than the tiny model's 512-token context: the engine must refuse it alone.
TOO_LONG = " ".join(f"word{i}" for i in range(1500))


def submit(api: httpx.Client, content: str, **body: Any) -> str:
    messages = [{"role": "user", "content": content}]
    payload = {
        "request_body": {"model": MODEL, "messages": messages, **body},
        "metadata": {"custom_id": content[:20]},
    }
    response = api.post("/v1/requests", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_batch(api: httpx.Client, batch_id: str, timeout: float = 600) -> dict[str, Any]:
    def ended() -> bool:
        return api.get(f"/v1/batches/{batch_id}").json()["status"] in {"completed", "failed"}

    wait_for(ended, f"batch {batch_id}", timeout=timeout)
    batch: dict[str, Any] = api.get(f"/v1/batches/{batch_id}").json()
    return batch


def jobs_of(stack: Stack, request_ids: list[str]) -> list[Job]:
    with stack.db.session() as session:
        job_ids = set(session.scalars(select(Request.job_id).where(Request.id.in_(request_ids))))
        return list(session.scalars(select(Job).where(Job.id.in_(job_ids))))


def test_requests_flow_through_the_deployments_to_jsonl(stack: Stack) -> None:
    with stack.client(stack.new_key()) as api:
        ids = [submit(api, f"Tell me about topic {i}", max_tokens=16, seed=i) for i in range(10)]
        bad = submit(api, TOO_LONG, max_tokens=16)
        single = submit(api, "A request in no batch", max_tokens=8)
        batch = api.post("/v1/batches", json={"requests_ids": [*ids, bad]}).json()
        assert api.get(f"/v1/batches/{batch['id']}/results").status_code == 409

        done = wait_batch(api, batch["id"])
        assert done["status"] == "completed"
        counts = done["request_counts"]
        assert (counts["total"], counts["completed"], counts["failed"]) == (11, 10, 1)
        # Published after its job's carbon was accounted (the replayed GB trace).
        carbon = CarbonObject.model_validate(done["carbon"])
        assert carbon.zone == "GB" and carbon.gco2e > 0 and carbon.baseline_gco2e > 0
        response = api.get(f"/v1/batches/{batch['id']}/results")
        assert response.status_code == 200
        lines = [RequestObject.model_validate_json(line) for line in response.text.splitlines()]
        assert [line.id for line in lines] == sorted([*ids, bad])
        by_id = {line.id: line for line in lines}
        for rid in ids:
            line = by_id[rid]
            assert line.status == "completed" and line.error is None and line.result_body
            body = line.result_body
            assert body["object"] == "chat.completion" and body["model"] == MODEL
            assert len(body["choices"]) == 1
            assert body["choices"][0]["finish_reason"] in {"stop", "length"}
            usage = body["usage"]
            assert 0 < usage["completion_tokens"] <= 16
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        shares = [by_id[rid].carbon for rid in ids]
        assert sum(share.gco2e for share in shares if share) == pytest.approx(carbon.gco2e)
        assert by_id[bad].status == "failed" and by_id[bad].result_body is None
        assert by_id[bad].error and by_id[bad].error.code == "context_length_exceeded"

        def single_done() -> bool:
            return bool(api.get(f"/v1/requests/{single}/status").json()["status"] == "completed")

        wait_for(single_done, "the single request", timeout=300)
        result = api.get(f"/v1/requests/{single}").json()
        assert result["result_body"]["choices"][0]["message"]["role"] == "assistant"
        assert result["batch_id"] is None
        assert result["carbon"]["zone"] == "GB" and result["carbon"]["ran_at"] > 0


def test_a_killed_inference_run_is_recovered_without_loss_or_duplicates(stack: Stack) -> None:
    key = stack.new_key()
    with stack.client(key) as api:
        ids = [
            submit(api, f"Long story {i}", max_tokens=160, temperature=1.0)
            for i in range(6 * CHUNK_SIZE)
        ]
        batch = api.post("/v1/batches", json={"requests_ids": ids}).json()

        def last_chunk(job: Job) -> Path:
            return stack.object_path(
                f"jobs/{job.id}/chunk-{(job.request_count - 1) // CHUNK_SIZE:05d}.parquet"
            )

        # Wait until a job of three chunks or more has finished its first, then kill its
        # process. A tick can come while the requests are being sent: they may then be in
        # two jobs (at least one of three chunks).
        def first_chunk_done() -> Job | None:
            for job in jobs_of(stack, ids):
                if (
                    job.runner
                    and job.request_count > 2 * CHUNK_SIZE
                    and stack.object_path(f"jobs/{job.id}/chunk-00000.parquet").exists()
                ):
                    return job
            return None

        wait_for(first_chunk_done, "the first chunk", timeout=400)
        job = first_chunk_done()
        assert job is not None and job.runner
        os.kill(int(job.runner.rsplit(":", 1)[1]), signal.SIGKILL)
        assert not last_chunk(job).exists()

        done = wait_batch(api, batch["id"])
    assert done["request_counts"]["completed"] == len(ids)
    jobs = {j.id: j for j in jobs_of(stack, ids)}
    assert jobs[job.id].attempts == 2
    assert {j.status for j in jobs.values()} == {"completed"}

    import pyarrow.parquet as pq

    chunk_files = sorted(
        path
        for job_id in jobs
        for path in (stack.data_dir / "objects" / "jobs" / job_id).glob("chunk-*.parquet")
    )
    ran = [rid for path in chunk_files for rid in pq.read_table(path)["id"].to_pylist()]
    assert sorted(ran) == sorted(ids)  # every request ran exactly once
    with stack.db.session() as session:
        rows = list(session.scalars(select(Request).where(Request.id.in_(ids))))
        key_row = session.scalar(select(ApiKey).where(ApiKey.id == rows[0].key_id))
    for row in rows:
        assert (
            row.result_key
            and row.id in pq.read_table(stack.object_path(row.result_key))["id"].to_pylist()
        )
    assert key_row is not None
    spent = sum(r.cost_usd or Decimal(0) for r in rows)
    assert key_row.credits_usd == pytest.approx(Decimal(10) - spent, abs=Decimal("1e-8"))


def test_cancel_while_registered_and_while_in_progress(stack: Stack) -> None:
    with stack.client(stack.new_key()) as api:
        early = submit(api, "cancel me at once", max_tokens=8)
        assert api.post(f"/v1/requests/{early}/cancel").json()["status"] == "cancelled"
        early_batch_ids = [submit(api, f"early batch {i}", max_tokens=8) for i in range(2)]
        early_batch = api.post("/v1/batches", json={"requests_ids": early_batch_ids}).json()
        assert api.post(f"/v1/batches/{early_batch['id']}/cancel").json()["status"] == "cancelled"

        late_ids = [
            submit(api, f"late {i}", max_tokens=160, temperature=1.0) for i in range(6 * CHUNK_SIZE)
        ]
        late = api.post("/v1/batches", json={"requests_ids": late_ids}).json()

        def started() -> bool:
            return bool(
                api.get(f"/v1/batches/{late['id']}/status").json()["status"] != "registered"
            )

        wait_for(started, "the batch to start", timeout=300)
        cancelled = api.post(f"/v1/batches/{late['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"

        # Let the job end; what was cancelled stays cancelled and is not charged.
        def job_ended() -> bool:
            return all(j.status in {"completed", "failed"} for j in jobs_of(stack, late_ids))

        wait_for(job_ended, "the job to end", timeout=400)
        statuses = [api.get(f"/v1/requests/{r}/status").json()["status"] for r in late_ids]
        assert "cancelled" in statuses and set(statuses) <= {"completed", "cancelled"}
        for rid in [early, *early_batch_ids]:
            full = api.get(f"/v1/requests/{rid}").json()
            assert full["status"] == "cancelled" and full["result_body"] is None
        with stack.db.session() as session:
            charged = session.scalars(
                select(Request.cost_usd).where(
                    Request.id.in_(late_ids), Request.status == "cancelled"
                )
            ).all()
        assert set(charged) == {None}
        assert api.get(f"/v1/batches/{late['id']}/results").status_code == 409


def test_getting_started_snippets_complete_a_batch_on_the_served_stack(stack: Stack) -> None:
    key = stack.new_key()
    created = [
        printed(run_snippet(stack.base_url, key, snippets.SEND_REQUEST)[0]) for _ in range(2)
    ]
    first, second = (c["id"] for c in created)
    (line,) = run_snippet(
        stack.base_url, key, snippets.CREATE_BATCH, request_id1=first, request_id2=second
    )
    batch = printed(line)
    with stack.client(key) as api:
        wait_batch(api, batch["id"])
    (status_line,) = run_snippet(
        stack.base_url, key, snippets.BATCH_STATUS, batch_id_here=batch["id"]
    )
    assert printed(status_line)["status"] == "completed"
    lines = run_snippet(stack.base_url, key, snippets.BATCH_RESULTS, batch_id_here=batch["id"])
    results = [RequestObject.model_validate_json(text) for text in lines if text]
    assert sorted(r.id for r in results) == sorted([first, second])
    assert all(r.status == "completed" and r.result_body for r in results)
    assert {r.metadata.get("batch_name") for r in results} == {None}
    assert {r.batch_id for r in results} == {batch["id"]}


def test_the_deployed_scheduler_never_runs_twice_at_once(stack: Stack, prefect_api: str) -> None:
    # As the Prefect server holds it after `offpeak serve` deployed prefect.yaml. The
    # settings are explicit: this process may have loaded Prefect's before the server.
    from prefect import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_api}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("scheduler/scheduler")
    limit = deployment.global_concurrency_limit
    assert limit is not None and limit.limit == 1
    assert deployment.concurrency_options is not None
    assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW


def _children(pid: int) -> dict[int, str]:
    """The processes ``pid`` started, with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry)] = command.replace("\0", " ")
    return found


def test_the_control_flows_run_only_on_cpu_time_the_engines_leave(stack: Stack) -> None:
    # The control pool's worker, and so every tick it starts, is SCHED_IDLE: on one
    # machine a tick then never takes a core from a generating engine.
    workers = _workers(stack.pid)
    assert set(workers) == {"control", "local"}
    assert os.sched_getscheduler(workers["control"]) == os.SCHED_IDLE
    assert os.sched_getscheduler(workers["local"]) == os.SCHED_OTHER


def _workers(serve: int) -> dict[str, int]:
    """The Prefect workers `offpeak serve` runs: their pids by pool."""
    return {
        command.split("--pool", 1)[1].split()[0]: pid
        for pid, command in _children(serve).items()
        if "worker start --pool" in command
    }


def _age(pid: int) -> float:
    """Seconds since process ``pid`` started."""
    started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started / os.sysconf("SC_CLK_TCK")


def _nudged_runs(prefect_api: str) -> dict[str, str]:
    """The scheduler's flow runs a nudge asked for: their states by id, oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_api}),
        get_client(sync_client=True) as client,
    ):
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["nudge"])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["scheduler"])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
    return {str(run.id): run.state_type.value if run.state_type else "" for run in runs}


def test_a_submitted_batch_runs_the_scheduler_at_once(stack: Stack, prefect_api: str) -> None:
    # `offpeak serve` gives the API the scheduler's deployment: creating a batch asks
    # Prefect for a scheduler run there and then, not at the next tick.
    before = len(_nudged_runs(prefect_api))
    with stack.client(stack.new_key()) as api:
        ids = [submit(api, f"Nudge {i}", max_tokens=4, seed=i) for i in range(2)]
        response = api.post("/v1/batches", json={"requests_ids": ids})
        assert response.status_code == 201, response.text
        wait_for(lambda: len(_nudged_runs(prefect_api)) > before, "a nudged run", timeout=30)
        wait_batch(api, response.json()["id"])


def test_a_worker_that_exits_is_started_again(stack: Stack) -> None:
    # Prefect's worker exits when its server answers 500 at the wrong moment; `offpeak
    # serve` starts it again (one that exits within a minute of starting stops the stack).
    from flows.serve import RESTART_AFTER_SECONDS

    worker = _workers(stack.pid)["local"]
    time.sleep(max(0.0, RESTART_AFTER_SECONDS + 1 - _age(worker)))
    os.kill(worker, signal.SIGKILL)
    wait_for(
        lambda: _workers(stack.pid).get("local", worker) != worker,
        "the local worker started again",
        timeout=30,
    )
    assert "worker local exited with -9; starting it again" in stack.log.read_text()
    with stack.client(stack.new_key()) as api:
        ids = [submit(api, "After the restart", max_tokens=4, seed=1)]
        response = api.post("/v1/batches", json={"requests_ids": ids})
        assert response.status_code == 201, response.text
        assert wait_batch(api, response.json()["id"])["status"] == "completed"
