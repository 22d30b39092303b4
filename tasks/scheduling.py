"""Tasks of the scheduler: seal, expire, plan, open and launch jobs, recover crashed ones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import numpy as np
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from offpeak.carbon import open_provider
from offpeak.catalog.pools import PoolSpec, load_pools, pool_of_deployment
from offpeak.clock import now
from offpeak.config import Settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.plan.planner import pools_from_specs
from offpeak.plan.policy import POLICIES, Launch, Tick
from offpeak.plan.report import plan_markdown
from offpeak.run.launch import open_job
from offpeak.state import jobs as state
from offpeak.state.models import Job
from tasks.retry import retried_task
from tasks.runtime import runtime

# A run in one of these states is over; if its job is not completed, the run stopped
# short of it (a run that finishes its job marks the job completed before it ends).
ENDED_RUN = {StateType.CRASHED, StateType.FAILED, StateType.CANCELLED, StateType.COMPLETED}
MAX_FORECAST_HOURS = 73  # the longest completion window (72 h) and the current hour


@retried_task
def seal_leftovers() -> int:
    """Seal requests a crashed API process left unsealed."""
    rt = runtime()
    return sum(r.rows for r in seal_all(rt.db, rt.store, rt.settings.seal_rows))


@retried_task
def expire_overdue() -> int:
    """Fail requests whose completion window ended before they could run."""
    return state.expire_overdue(runtime().db, now())


@dataclass(frozen=True)
class Planned:
    launches: list[Launch]
    report: str  # Markdown: per pool, the forecast, the chosen windows, the saving


def _forecasts(
    settings: Settings, zones: set[str], at: datetime, hours: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each zone's hourly forecast from the current hour, as far as it is unbroken."""
    forecasts: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    with open_provider(settings) as provider:
        for zone in sorted(zones):
            forecast = provider.forecast(zone, at, hours)
            dense = forecast.on_hours(at, hours)
            gaps = np.flatnonzero(np.isnan(dense))
            forecasts[zone] = dense[: gaps[0]] if len(gaps) else dense
            sources[zone] = forecast.source
    return forecasts, sources


def _busy(db_jobs: list[Job], specs: dict[str, PoolSpec]) -> dict[str, list[int]]:
    """Jobs holding a place in each pool this hour."""
    busy: dict[str, list[int]] = {}
    for job in db_jobs:
        name, _ = pool_of_deployment(specs, job.deployment)
        busy.setdefault(name, [0])[0] += 1
    return busy


@retried_task
def plan_launches() -> Planned:
    """Ask the launch policy what to start now, and where."""
    rt = runtime()
    settings = rt.settings
    specs = load_pools(settings.pools_path)
    pools = pools_from_specs(specs)
    groups = pending_groups(rt.db, rt.registry)
    at = datetime.now(UTC)
    forecasts: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    if settings.scheduler_policy == "carbon" and groups:
        last = max(u.last_expires_at for g in groups for u in g.units)
        hours = min(max(math.ceil((last - at.timestamp()) / 3600) + 1, 1), MAX_FORECAST_HOURS)
        forecasts, sources = _forecasts(settings, {p.zone for p in pools}, at, hours)
    tick = Tick(
        at,
        groups,
        pools,
        rt.registry,
        settings.job_max_requests,
        forecasts,
        _busy(state.active_jobs(rt.db), specs),
    )
    decision = POLICIES[settings.scheduler_policy](tick)
    report = plan_markdown(decision.plan, groups, pools, forecasts, sources)
    return Planned(decision.launches, report)


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


@retried_task
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
    return [
        {
            "engine_model": launch.group.engine_model,
            "models": launch.group.models,
            "pool": launch.pool,
            "max_requests": launch.max_requests,
        }
        for launch in launches
    ]
