"""Tasks of the scheduler: seal, expire, plan, open and launch jobs, recover crashed ones."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from offpeak.clock import now
from offpeak.ingest import seal_all
from offpeak.jobs import open_job, pending_groups
from offpeak.policy import POLICIES, Launch
from offpeak.state import jobs as state
from offpeak.state.models import Job
from tasks.retry import RETRIES, RETRY_DELAYS, transient
from tasks.runtime import runtime

# A run in one of these states is over; if its job is not completed, the run stopped
# short of it (a run that finishes its job marks the job completed before it ends).
ENDED_RUN = {StateType.CRASHED, StateType.FAILED, StateType.CANCELLED, StateType.COMPLETED}


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def seal_leftovers() -> int:
    """Seal requests a crashed API process left unsealed."""
    rt = runtime()
    return sum(r.rows for r in seal_all(rt.db, rt.store, rt.settings.seal_rows))


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def expire_overdue() -> int:
    """Fail requests whose completion window ended before they could run."""
    return state.expire_overdue(runtime().db, now())


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def plan_launches() -> list[Launch]:
    """Ask the launch policy what to start now."""
    rt = runtime()
    policy = POLICIES[rt.settings.scheduler_policy]
    return policy(pending_groups(rt.db, rt.registry), rt.settings)


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def open_launch(launch: Launch) -> str | None:
    """Write a job's manifest and claim its requests; the job id, or None if none left."""
    rt = runtime()
    job = open_job(
        rt.db,
        rt.store,
        launch.group,
        max_requests=launch.max_requests,
        deployment=launch.deployment,
        at=now(),
    )
    return job.id if job else None


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def launch_job(job_id: str) -> str:
    """Start the job's inference flow run on its deployment, without waiting for it."""
    db = runtime().db
    job = state.get_job(db, job_id)
    attempt = job.attempts + 1
    flow_run = cast(
        FlowRun,  # the sync variant: this task is sync
        run_deployment(
            name=job.deployment,
            parameters={"job_id": job_id},
            timeout=0,
            as_subflow=False,
            flow_run_name=f"job-{job_id}-{attempt}",
            idempotency_key=f"job-{job_id}-{attempt}",
        ),
    )
    state.update_job(
        db,
        job_id,
        status="launched",
        flow_run_id=str(flow_run.id),
        launched_at=now(),
        attempts=attempt,
    )
    return str(flow_run.id)


def _run_state(job: Job) -> StateType | None:
    if job.flow_run_id is None:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(job.flow_run_id))
        except ObjectNotFound:  # deleted from Prefect: it will not come back
            return StateType.CRASHED
    return run.state.type if run.state else None


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def recover_jobs() -> dict[str, list[str]]:
    """Launch jobs never launched; relaunch jobs whose run crashed or failed (restarts
    skip finished chunks); after the last attempt, fail what they still hold."""
    rt = runtime()
    relaunch: list[str] = []
    failed: list[str] = []
    for job in state.active_jobs(rt.db):
        run_state = _run_state(job)
        if job.status != "created" and run_state not in ENDED_RUN:
            continue  # still scheduled or running
        if job.attempts >= rt.settings.job_max_attempts:
            reason = (
                f"job {job.id} stopped {job.attempts} times (last run {run_state.value.lower()})"
                if run_state
                else f"job {job.id} could not be launched"
            )
            state.fail_job(rt.db, job.id, "job_failed", reason, now())
            failed.append(job.id)
        else:
            relaunch.append(job.id)
    return {"relaunch": relaunch, "failed": failed}


def summary(launches: list[Launch]) -> list[dict[str, Any]]:
    return [{**asdict(launch.group), "max_requests": launch.max_requests} for launch in launches]
