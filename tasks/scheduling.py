"""Tasks of the scheduler: seal, expire, plan, open and launch jobs, recover crashed ones.

Each task calls the core (`offpeak.plan`, `offpeak.run`, `offpeak.state`); only what
talks to Prefect itself (starting a deployment, reading a flow run's state) is here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from offpeak.carbon import open_provider
from offpeak.clock import now
from offpeak.ingest.sealing import seal_all
from offpeak.plan.gather import Planned, plan_tick
from offpeak.plan.policy import Launch
from offpeak.plan.recovery import recovery
from offpeak.plan.report import launch_summary as summary
from offpeak.run.launch import open_job
from offpeak.schemas import ErrorCode, JobStatus
from offpeak.state import jobs as state
from offpeak.state.models import Job
from tasks.retry import retried_task
from tasks.runtime import runtime

__all__ = [
    "expire_overdue",
    "launch_job",
    "open_launch",
    "plan_launches",
    "recover_jobs",
    "seal_leftovers",
    "summary",
]


@retried_task
def seal_leftovers() -> int:
    """Seal requests a crashed API process left unsealed."""
    rt = runtime()
    return sum(r.rows for r in seal_all(rt.db, rt.store, rt.settings.seal_rows))


@retried_task
def expire_overdue() -> int:
    """Fail requests whose completion window ended before they could run."""
    return state.expire_overdue(runtime().db, now())


@retried_task
def plan_launches() -> Planned:
    """Ask the launch policy what to start now, and where."""
    rt = runtime()
    with open_provider(rt.settings, rt.store) as provider:
        return plan_tick(rt, provider, datetime.now(UTC))


@retried_task
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
        expires_between=launch.expires_between,
    )
    return job.id if job else None


@retried_task
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
        status=JobStatus.LAUNCHED,
        # A run still holding the job (a relaunch after its lease expired) loses it at
        # its next heartbeat and stops; the new run takes the job.
        lease_owner=None,
        lease_expires_at=None,
        flow_run_id=str(flow_run.id),
        launched_at=now(),
        attempts=attempt,
    )
    return str(flow_run.id)


def _run_state(job: Job) -> str | None:
    """The state of the job's flow run, lower-case (`crashed`, `running`, ...)."""
    if job.flow_run_id is None:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(job.flow_run_id))
        except ObjectNotFound:  # deleted from Prefect: it will not come back
            return "crashed"
    return run.state.type.value.lower() if run.state else None


@retried_task
def recover_jobs() -> dict[str, list[str]]:
    """Launch jobs never launched; relaunch jobs whose run crashed or failed (restarts
    skip finished chunks); after the last attempt, fail what they still hold."""
    rt = runtime()
    jobs = state.active_jobs(rt.db)
    decided = recovery(
        jobs,
        {job.id: _run_state(job) for job in jobs},
        rt.settings.job_max_attempts,
        now(),
        rt.settings.job_lease_seconds,
    )
    for job_id, reason in decided.fail:
        state.fail_job(rt.db, job_id, ErrorCode.JOB_FAILED, reason, now())
    return {"relaunch": decided.relaunch, "failed": [job_id for job_id, _ in decided.fail]}
