"""The inference task: one job through one engine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from offpeak.carbon import open_provider
from offpeak.catalog.pools import load_pools
from offpeak.logs import log_context
from offpeak.run.accounting import JobCarbon
from offpeak.run.footprint import record_job_footprint
from offpeak.run.runner import JobRunner, open_engine
from offpeak.state.jobs import get_job
from tasks.publishing import publish_ready_batches
from tasks.runtime import runtime


@task(cache_policy=NO_CACHE)
def run_job(job_id: str) -> dict[str, Any]:
    """Run a job chunk by chunk, then publish the batches it finished."""
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

    footprints: list[JobCarbon | None] = []

    def account(job_id: str) -> None:
        """The job's energy and carbon, and each request's share against its baseline."""
        with open_provider(rt.settings) as provider:
            pools = load_pools(rt.settings.pools_path)
            footprints.append(record_job_footprint(rt.db, provider, pools, job_id))

    runner = JobRunner(
        rt.db,
        rt.store,
        rt.registry,
        rt.settings,
        engine_factory=lambda: open_engine(rt.settings, rt.registry, job.model),
        account=account,
    )
    try:
        with log_context(job_id=job_id):
            report = runner.run(job_id, progress)
        # Before the engine stops: stopping vLLM takes seconds (5 on 2 CPU cores) that the
        # batches this job completed need not wait for.
        published = publish_ready_batches()
    finally:
        runner.close()
    carbon = asdict(footprints[-1]) if footprints and footprints[-1] else None
    return {
        **asdict(report),
        "tokens_per_s": report.tokens_per_s,
        "carbon": carbon,
        "published": published,
    }
