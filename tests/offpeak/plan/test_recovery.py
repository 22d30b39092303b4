"""Which active jobs the scheduler launches again, and which it gives up on."""

from __future__ import annotations

from offpeak.plan.recovery import recovery
from offpeak.schemas import JobStatus
from offpeak.state.models import Job


def job(name: str, status: JobStatus, attempts: int) -> Job:
    return Job(id=name, status=status, attempts=attempts)


def test_jobs_never_launched_and_runs_that_ended_short_are_launched_again() -> None:
    jobs = [
        job("new", JobStatus.CREATED, 0),
        job("crashed", JobStatus.RUNNING, 1),
        job("cancelled", JobStatus.LAUNCHED, 2),
        job("running", JobStatus.RUNNING, 1),
        job("queued", JobStatus.LAUNCHED, 1),
        job("unknown", JobStatus.LAUNCHED, 1),
    ]
    states = {
        "crashed": "crashed",
        "cancelled": "cancelled",
        "running": "running",
        "queued": "scheduled",
    }
    decided = recovery(jobs, states, max_attempts=3)
    assert decided.relaunch == ["new", "crashed", "cancelled"]
    assert decided.fail == []


def test_a_job_out_of_attempts_fails_saying_how_its_last_run_ended() -> None:
    jobs = [job("a", JobStatus.RUNNING, 3), job("b", JobStatus.CREATED, 3)]
    decided = recovery(jobs, {"a": "failed"}, max_attempts=3)
    assert decided.relaunch == []
    assert decided.fail == [
        ("a", "job a stopped 3 times (last run failed)"),
        ("b", "job b could not be launched"),
    ]


def test_a_run_that_completed_without_completing_its_job_counts_as_stopped() -> None:
    decided = recovery([job("a", JobStatus.RUNNING, 1)], {"a": "completed"}, max_attempts=1)
    assert decided.fail == [("a", "job a stopped 1 times (last run completed)")]


def test_a_running_job_whose_lease_expired_is_taken_over_whatever_its_run_says() -> None:
    silent = job("silent", JobStatus.RUNNING, 1)
    silent.lease_expires_at = 100
    alive = job("alive", JobStatus.RUNNING, 1)
    alive.lease_expires_at = 200
    states = {"silent": "running", "alive": "running"}
    decided = recovery([silent, alive], states, max_attempts=3, at=150, lease=30)
    assert decided.relaunch == ["silent"]
    spent = job("spent", JobStatus.RUNNING, 3)
    spent.lease_expires_at = 100
    assert recovery([spent], {}, max_attempts=3, at=150).fail == [
        ("spent", "job spent stopped 3 times (last run silent)")
    ]


def test_a_launched_job_no_run_took_in_three_leases_is_launched_again() -> None:
    stuck = job("stuck", JobStatus.LAUNCHED, 1)
    stuck.launched_at = 0
    starting = job("starting", JobStatus.LAUNCHED, 1)
    starting.launched_at = 50
    states = {"stuck": "pending", "starting": "pending"}
    decided = recovery([stuck, starting], states, max_attempts=3, at=100, lease=30)
    assert decided.relaunch == ["stuck"]
