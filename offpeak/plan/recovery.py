"""Which active jobs to launch again, and which to give up on (pure).

A job whose run ended without completing it stopped short (a run that finishes its job
marks the job completed before it ends); so did a job never launched, and a running job
whose run's lease expired (its heartbeat stopped: killed, paused or cut off, whatever
the orchestrator still says of it). Each gets another run until it has had
`job_max_attempts`; then what it still holds fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from offpeak.schemas import JobStatus
from offpeak.state.models import Job

# States of an orchestrator run that is over, lower-case (Prefect's StateType names).
RUN_ENDED = frozenset({"crashed", "failed", "cancelled", "completed"})


@dataclass(frozen=True)
class Recovery:
    relaunch: list[str]  # job ids
    fail: list[tuple[str, str]]  # (job id, why it is given up)


def recovery(
    jobs: Iterable[Job],
    run_states: Mapping[str, str | None],
    max_attempts: int,
    at: int | None = None,
    lease: int | None = None,
) -> Recovery:
    """Sort active ``jobs`` by the state of their last run (``run_states`` by job id,
    None or absent when there is no run or its state is unknown): launch again those
    never launched, whose run ended, or, at unix time ``at``, whose lease expired or
    whose run has not taken them three ``lease``s after launch; fail those out of
    attempts."""
    relaunch: list[str] = []
    fail: list[tuple[str, str]] = []
    for job in jobs:
        run_state = run_states.get(job.id)
        silent = at is not None and (
            (
                job.status == JobStatus.RUNNING
                and job.lease_expires_at is not None
                and job.lease_expires_at < at
            )
            or (
                # Its run never started (e.g. its worker died holding it): the
                # orchestrator may keep it pending for ever.
                job.status == JobStatus.LAUNCHED
                and lease is not None
                and job.launched_at is not None
                and job.launched_at + 3 * lease < at
                and run_state != "running"
            )
        )
        if silent:
            run_state = "silent"  # its run stopped renewing its lease
        elif job.status != JobStatus.CREATED and run_state not in RUN_ENDED:
            continue  # still scheduled or running
        if job.attempts < max_attempts:
            relaunch.append(job.id)
        elif run_state:
            fail.append(
                (job.id, f"job {job.id} stopped {job.attempts} times (last run {run_state})")
            )
        else:
            fail.append((job.id, f"job {job.id} could not be launched"))
    return Recovery(relaunch, fail)
