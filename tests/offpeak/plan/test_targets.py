"""Divisible work in the planner: each unit gets the clean hours of its own window, the
pools' room shared out jointly, and free places run jobs side by side."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings
from offpeak.plan.chart import draw
from offpeak.plan.pending import PendingGroup, PendingUnit
from offpeak.plan.planner import PlannerParams, Pool, Work, WorkGroup, plan
from offpeak.plan.policy import Tick, carbon
from offpeak.plan.report import plan_markdown

NOW = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
HOUR = 3600.0
EXACT = PlannerParams(safety_margin_s=0.0)


def pool(jobs: int = 1, startup: float = 0.0, name: str = "a", zone: str = "DE") -> Pool:
    return Pool(name, f"infer-{name}", zone, 1, 700.0, 1.2, jobs, startup)


def stream(hours: range, per_hour: float, window: float = 24.0) -> WorkGroup:
    """A unit a minute for each hour of ``hours`` back (their arrivals), ``window`` due."""
    units = [
        Work(NOW.timestamp() + (window - h) * HOUR + m * 60, per_hour / 60)
        for h in hours
        for m in range(60)
    ]
    return WorkGroup("m", sorted(units, key=lambda u: u.expires_at))


def starts(result: object) -> list[float]:
    return sorted((j.start - NOW).total_seconds() / HOUR for j in result.jobs)  # type: ignore[attr-defined]


def test_younger_work_keeps_the_clean_hour_of_its_own_window() -> None:
    # Arrived 20 h ago (due in 4 h) and just now (due in 24 h): clean at +2 h and, much
    # cleaner, at +10 h. One job of the earliest deadline would take +2 h for both.
    forecast = np.full(25, 400.0)
    forecast[2], forecast[10] = 200.0, 50.0
    units = [Work(NOW.timestamp() + 4 * HOUR, 300.0), Work(NOW.timestamp() + 24 * HOUR, 300.0)]
    group = WorkGroup("m", units)
    result = plan(NOW, [group], [pool(startup=0.0)], {"DE": forecast}, params=EXACT)
    assert [(j.units, (j.start - NOW) / timedelta(hours=1)) for j in result.jobs] == [
        ((0,), 2.0),
        ((1,), 10.0),
    ]


def test_a_stream_fills_the_clean_hours_within_capacity_and_deadlines() -> None:
    forecast = 300.0 + 200.0 * np.sin(np.arange(25) / 24 * 2 * np.pi)  # clean from +12 h
    group = stream(range(1, 24), 3000.0)  # 23 h of arrivals, 19 GPU-hours in all
    result = plan(NOW, [group], [pool(jobs=2, startup=60.0)], {"DE": forecast}, params=EXACT)
    assert result.late == []
    assert sorted(i for j in result.jobs for i in j.units) == list(range(len(group.units)))
    for job in result.jobs:
        assert job.end <= job.deadline + timedelta(seconds=1)
    held = np.zeros(30, dtype=int)  # jobs per clock hour: never above the two places
    for job in result.jobs:
        first = int((job.start - NOW) / timedelta(hours=1))
        last = int(np.ceil((job.end - NOW) / timedelta(hours=1) - 1e-9))
        held[first : max(last, first + 1)] += 1
    assert held.max() <= 2
    # What may wait for the trough (from +12 h) waits for it.
    for job in result.jobs:
        if job.deadline >= NOW + timedelta(hours=20):
            assert job.start >= NOW + timedelta(hours=12)


def test_free_places_run_jobs_side_by_side_in_a_clean_hour() -> None:
    forecast = np.full(25, 400.0)
    forecast[6] = 100.0  # one clean hour; the hours around it dirty
    group = stream(range(10, 14), 2700.0)  # 3 GPU-hours due in 10-14 h
    result = plan(NOW, [group], [pool(jobs=4, startup=30.0)], {"DE": forecast}, params=EXACT)
    clean = [j for j in result.jobs if (j.start - NOW) == timedelta(hours=6)]
    assert len(clean) >= 3 and {j.parallel for j in clean} == {len(clean)}
    assert all(j.end <= NOW + timedelta(hours=7) for j in clean)
    # Each takes a range of deadlines, the ranges in order and apart.
    ranges = sorted((min(j.units), max(j.units)) for j in clean)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    # On a flat forecast nothing is gained by more start-ups: one job.
    flat = plan(NOW, [group], [pool(jobs=4, startup=30.0)], {"DE": np.full(25, 300.0)})
    assert {j.parallel for j in flat.jobs} == {1}


def test_small_work_now_waits_for_a_nearly_as_clean_hour_to_share_a_start_up() -> None:
    forecast = np.full(25, 300.0)
    forecast[0], forecast[5] = 200.0, 210.0
    tiny = WorkGroup("m", [Work(NOW.timestamp() + 20 * HOUR + i, 20.0) for i in range(3)])
    result = plan(NOW, [tiny], [pool(startup=120.0)], {"DE": forecast}, params=EXACT)
    (job,) = result.jobs
    assert job.reason == "aggregating" and job.start == NOW + timedelta(hours=5)
    # Much cleaner now than later: it runs now, start-up and all.
    forecast[0] = 50.0
    (now,) = plan(NOW, [tiny], [pool(startup=120.0)], {"DE": forecast}, params=EXACT).launch
    assert now.units == (0, 1, 2)


def test_an_hours_work_now_waits_for_the_next_hour_when_the_stream_brings_as_much() -> None:
    # A clean spell: now, then 1 % dirtier. 600 GPU-s a job of its own costs 30 s of
    # start-up (5 %); waiting an hour costs 1 % of it, and the next hour's arrivals
    # (as much again, by the deadlines due in the window's last hour) share the start.
    forecast = np.full(25, 300.0)
    forecast[0], forecast[1] = 100.0, 101.0
    group = stream(range(1), 600.0)  # the last hour's arrivals, due in 23-24 h
    roomy = [pool(jobs=4, startup=30.0)]
    (job,) = plan(NOW, [group], roomy, {"DE": forecast}, params=EXACT).jobs
    assert job.start == NOW + timedelta(hours=1)
    # A trickle (arrivals below the minimum job) would wait for company anyway: no gain.
    trickle = WorkGroup("m", [*stream(range(1, 2), 590.0).units, *stream(range(1), 10.0).units])
    (now,) = plan(NOW, [trickle], roomy, {"DE": forecast}, params=EXACT).jobs
    assert now.start == NOW
    # Nor on a pool of one place: its hours are the joint fill's to share out.
    (one,) = plan(NOW, [group], [pool(jobs=1, startup=30.0)], {"DE": forecast}).jobs
    assert one.start == NOW


def test_side_by_side_jobs_each_end_by_their_own_deadlines() -> None:
    # Slot 1 is cleanest and slot 2 nearly so: two long jobs from slot 1 would spill into
    # slot 2 cheaply, but the earlier one would end past its units' deadline (and so run
    # now instead, in a dirtier hour). More, shorter jobs side by side keep slot 1.
    forecast = np.full(25, 300.0)
    forecast[0], forecast[1], forecast[2] = 91.0, 88.0, 89.0
    group = stream(range(2, 24), 600.0)  # 22 h of arrivals, the oldest due in 2 h
    result = plan(NOW, [group], [pool(jobs=100, startup=30.0)], {"DE": forecast}, params=EXACT)
    assert result.late == []
    for job in result.jobs:
        assert job.end <= job.deadline + timedelta(seconds=1)
    assert sum(j.gpu_seconds for j in result.launch) < 700.0  # only what is due in 2 h


def test_side_by_side_jobs_launch_disjoint_deadline_ranges_and_show_in_the_report() -> None:
    t0 = int(NOW.timestamp())
    units = tuple(
        PendingUnit(t0 + 12 * 3600 + 60 * m, t0 + 12 * 3600 + 60 * m + 30, 50, 360_000)
        for m in range(60)
    )  # 3000 requests, 3 GPU-hours of tiny-chat at 2000 tokens/s
    group = PendingGroup("tiny-chat", ("tiny-chat",), units)
    forecast = np.full(13, 400.0)
    forecast[0] = 80.0  # clean now
    pools = [Pool("local", "inference/local", "GB", max_concurrent_jobs=4, startup_seconds=30)]
    tick = Tick(
        NOW,
        [group],
        pools,
        ModelRegistry.load(Settings().models_path),
        5000,
        {"GB": forecast},
    )
    decision = carbon(tick)
    assert len(decision.launches) >= 3
    ranges = sorted(launch.expires_between for launch in decision.launches)  # type: ignore[type-var]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # type: ignore[index]
    assert sum(launch.max_requests for launch in decision.launches) == 3000
    text = plan_markdown(decision.plan, [group], pools, {"GB": forecast}, {"GB": "replay"})
    assert f"1 of {len(decision.launches)} side by side" in text and "Elastic:" in text
    labels = [t.get_text() for t in draw(decision.plan, pools, {"GB": forecast}).axes[0].texts]  # type: ignore[arg-type]
    assert labels == [f"tiny-chat x{len(decision.launches)}"]


@pytest.mark.parametrize("minute", [0, 25])
def test_units_due_this_hour_are_left_to_the_default_cut(minute: int) -> None:
    now = NOW + timedelta(minutes=minute)
    units = [Work(now.timestamp() + 1800, 600.0), Work(now.timestamp() + 20 * HOUR, 600.0)]
    forecast = np.full(25, 300.0)
    forecast[8] = 100.0
    result = plan(now, [WorkGroup("m", units)], [pool()], {"DE": forecast}, params=EXACT)
    (due,) = [j for j in result.jobs if j.units == (0,)]
    assert due.start == now and due.end <= due.deadline
    (later,) = [j for j in result.jobs if j.units == (1,)]
    assert later.start == now + timedelta(hours=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    units=st.lists(
        st.tuples(st.floats(0.5, 30.0), st.floats(10.0, 1500.0)), min_size=2, max_size=40
    ),
    forecasts=st.lists(st.lists(st.floats(0.0, 800.0), max_size=32), min_size=2, max_size=2),
    minute=st.integers(0, 59),
    startup=st.sampled_from([0.0, 120.0]),
)
# Seen in CI: the cells gave the current quarter hour 4 of the 10 GPU-s due in it, and
# the unit went with the next hour's work into one job, late.
@example(
    limits=[1],
    units=[(1.0, 10.0), (2.0, 896.0)],
    forecasts=[[0.0, 0.0], []],
    minute=45,
    startup=0.0,
)
# Seen in a longer run: units due in 2 h and 3 h joined into one job by the default cut
# (no forecast), which the current hour's job of a third pushed an hour on, and late.
@example(
    limits=[1],
    units=[(2.0, 361.0), (3.0, 1500.0), (0.5, 10.0)],
    forecasts=[[], []],
    minute=27,
    startup=120.0,
)
# Seen in a CI run: units due in 1.5 h and 3 h joined by the default cut, their job
# ending a second into the next hour, which the unit due in 2 h needed: late.
@example(
    limits=[1],
    units=[(2.0, 10.0), (3.0, 59.0), (1.5, 122.0)],
    forecasts=[[0.0, 0.0], []],
    minute=55,
    startup=120.0,
)
def test_divisible_work_respects_capacity_and_keeps_its_deadlines(
    limits: list[int],
    units: list[tuple[float, float]],
    forecasts: list[list[float]],
    minute: int,
    startup: float,
) -> None:
    now = NOW + timedelta(minutes=minute)
    hour0 = NOW.timestamp()
    group = WorkGroup("m", [Work(hour0 + due * HOUR, work) for due, work in units])
    pools = [pool(n, startup, f"p{i}", f"Z{i}") for i, n in enumerate(limits)]
    result = plan(
        now, [group], pools, {f"Z{i}": np.array(f) for i, f in enumerate(forecasts)}, params=EXACT
    )
    assert sorted(i for j in result.jobs for i in j.units) == list(range(len(units)))
    held = {p.name: np.zeros(200, dtype=int) for p in pools}
    for job in result.jobs:
        first = int((job.start - NOW) / timedelta(hours=1))
        last = int(np.ceil((job.end - NOW) / timedelta(hours=1) - 1e-9))
        held[job.pool][first : max(last, first + 1)] += 1
    for p in pools:
        assert held[p.name].max() <= p.max_concurrent_jobs
    for job in [*result.launch, *result.later]:
        assert job.end <= job.deadline + timedelta(seconds=1) and job.start >= now
    # Whatever one job per unit could do on time, the plan does on time too.
    alone = plan(
        now,
        [WorkGroup(f"u{i}", [u]) for i, u in enumerate(group.units)],
        pools,
        {},
        params=EXACT,
    )
    if not alone.late:
        assert result.late == []
