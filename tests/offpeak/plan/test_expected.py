"""Expected times of waiting work read off a plan: per model and minute of deadline, the
earliest start and latest end of the jobs that cover the unit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from offpeak.plan.expected import Expected, expected_times, minute_of
from offpeak.plan.pending import PendingGroup, PendingUnit
from offpeak.plan.planner import Plan, PlannedJob
from offpeak.plan.policy import Launch

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
T = int(NOW.timestamp())
DUE = (T + 3_601, T + 86_430)  # two units, one minute each
GROUP = PendingGroup(
    "tiny-chat",
    ("tiny-chat", "llama-3.1-8b-instruct-fp16"),
    tuple(PendingUnit(d, d + 5, 2, 100) for d in DUE),
)


def job(units: tuple[int, ...], start_h: float, run_h: float) -> PlannedJob:
    start = NOW + timedelta(hours=start_h)
    return PlannedJob(
        group="tiny-chat",
        units=units,
        pool="local",
        deployment="inference/local",
        start=start,
        end=start + timedelta(hours=run_h),
        deadline=NOW + timedelta(hours=20),
        gpu_seconds=60.0,
        kwh=0.1,
        expected_gco2e=None,
        baseline_gco2e=None,
        reason="cleanest",
    )


def test_a_unit_runs_from_its_first_jobs_start_to_its_last_jobs_end() -> None:
    # The late unit is split over two jobs: now (launched) and in 5 hours.
    plan = Plan(NOW, launch=[job((0, 1), 0, 1)], later=[job((1,), 5, 2)], late=[])
    got = expected_times(plan, [GROUP], [], T)
    h = 3600
    first, second = minute_of(DUE[0]), minute_of(DUE[1])
    assert got == [
        Expected("llama-3.1-8b-instruct-fp16", first, T, T + h),
        Expected("llama-3.1-8b-instruct-fp16", second, T, T + 7 * h),
        Expected("tiny-chat", first, T, T + h),
        Expected("tiny-chat", second, T, T + 7 * h),
    ]


def test_without_a_plan_what_launches_starts_now_and_its_end_is_unknown() -> None:
    launch = Launch(GROUP, 10, "inference/local", "local")
    got = expected_times(None, [GROUP], [launch], T)
    assert {(e.expires_minute, e.start_at, e.completion_at) for e in got} == {
        (minute_of(DUE[0]), T, None),
        (minute_of(DUE[1]), T, None),
    }
    assert expected_times(None, [GROUP], [], T) == []  # nothing planned: nothing known


def test_a_job_of_a_group_no_longer_pending_is_skipped() -> None:
    plan = Plan(NOW, launch=[], later=[job((0,), 2, 1)], late=[])
    assert expected_times(plan, [], [], T) == []
