"""The inference task: one job through one engine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from offpeak.carbon import open_provider
from offpeak.footprint import record_job_footprint
from offpeak.inference import JobRunner, open_engine
from offpeak.pools import load_pools
from offpeak.state.jobs import get_job
from tasks.retry import RETRIES, RETRY_DELAYS, transient
from tasks.runtime import runtime


@task(cache_policy=NO_CACHE)
def run_job(job_id: str) -> dict[str, Any]:
    """Run a job chunk by chunk; each chunk's results are saved before the state moves."""
    rt = runtime()
    job = get_job(rt.db, job_id)
    artifact = cast(
        UUID,
        create_progress_artifact(  # the sync variant: this task is sync
            0.0,
            key=f"job-{job_id}",
            description=f"Inference job {job_id}: {job.request_count} requests",
        ),
    )

    def progress(done: int, total: int) -> None:
        update_progress_artifact(artifact, 100.0 * done / total)

    runner = JobRunner(
        rt.db,
        rt.store,
        rt.registry,
        rt.settings,
        engine_factory=lambda: open_engine(rt.settings, rt.registry, job.model),
    )
    try:
        report = runner.run(job_id, progress)
    finally:
        runner.close()
    return {**asdict(report), "tokens_per_s": report.tokens_per_s}


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def record_footprint(job_id: str) -> dict[str, float] | None:
    """Account the job's energy and carbon, and each request's share against its baseline."""
    rt = runtime()
    footprint = record_job_footprint(
        rt.db, open_provider(rt.settings), load_pools(rt.settings.pools_path), job_id
    )
    return asdict(footprint) if footprint else None
