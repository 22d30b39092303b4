"""Which active jobs to launch again, and which to give up on (pure).

A job whose run ended without completing it stopped short (a run that finishes its job
marks the job completed before it ends); so did a job never launched. Each gets another
run until it has had `job_max_attempts`; then what it still holds fails.
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
    jobs: Iterable[Job], run_states: Mapping[str, str | None], max_attempts: int
) -> Recovery:
    """Sort active ``jobs`` by the state of their last run (``run_states`` by job id,
    None or absent when there is no run or its state is unknown): launch again those
    never launched or whose run ended; fail those out of attempts."""
    relaunch: list[str] = []
    fail: list[tuple[str, str]] = []
    for job in jobs:
        run_state = run_states.get(job.id)
        if job.status != JobStatus.CREATED and run_state not in RUN_ENDED:
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
