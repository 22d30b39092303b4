"""The inference task: one job through one engine."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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

log = logging.getLogger(__name__)


class JobProgress:
    """The job's progress artifact, written from a thread of its own: a call to the Prefect
    server can take a minute (its SQLite database locked under load), which neither the
    job's chunks nor the publication of its batches wait for. Each call runs in the
    caller's context, so the artifact belongs to the task run; a failed call is logged,
    not raised (the artifact is for people, the state database holds the progress)."""

    def __init__(self, job_id: str, requests: int) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="job-progress")
        self._artifact: UUID | None = None
        self._send(self._create, job_id, requests)

    def __call__(self, done: int, total: int) -> None:
        self._send(self._update, 100.0 * done / total)

    def close(self) -> None:
        """Wait for the calls under way."""
        self._pool.shutdown(wait=True)

    def _send(self, call: Callable[..., None], *args: Any) -> None:
        future = self._pool.submit(contextvars.copy_context().run, call, *args)
        future.add_done_callback(_log_failure)

    def _create(self, job_id: str, requests: int) -> None:
        self._artifact = cast(
            UUID,
            create_progress_artifact(  # the sync variant: no event loop in this thread
                0.0,
                key=f"job-{job_id}",
                description=f"Inference job {job_id}: {requests} requests",
            ),
        )

    def _update(self, percent: float) -> None:
        if self._artifact is not None:
            update_progress_artifact(self._artifact, percent)


def _log_failure(future: Future[None]) -> None:
    if (exc := future.exception()) is not None:
        log.warning("job progress not recorded: %s: %s", type(exc).__name__, exc)


@task(cache_policy=NO_CACHE)
def run_job(job_id: str) -> dict[str, Any]:
    """Run a job chunk by chunk, then publish the batches it finished."""
    rt = runtime()
    job = get_job(rt.db, job_id)
    progress = JobProgress(job_id, job.request_count)

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
        progress.close()
    carbon = asdict(footprints[-1]) if footprints and footprints[-1] else None
    return {
        **asdict(report),
        "tokens_per_s": report.tokens_per_s,
        "carbon": carbon,
        "published": published,
    }
