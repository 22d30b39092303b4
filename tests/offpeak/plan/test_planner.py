"""The carbon-aware planner: choices on hand-made forecasts, and its guarantees (capacity,
deadlines) on random ones."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offpeak.catalog.models import ModelSpec
from offpeak.catalog.pools import PoolSpec
from offpeak.plan.planner import (
    Plan,
    PlannerParams,
    Pool,
    Work,
    WorkGroup,
    plan,
    pools_from_specs,
    window_integral,
    work_gpu_seconds,
)

NOW = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
HOUR = 3600.0
EXACT = PlannerParams(safety_margin_s=0.0)


def pool(name: str = "a", zone: str = "DE", jobs: int = 1, startup: float = 0.0) -> Pool:
    return Pool(name, f"infer-{name}", zone, 1, 700.0, 1.2, jobs, startup)


def job(key: str, hours: float, due_in_h: float, now: datetime = NOW) -> WorkGroup:
    return WorkGroup(key, [Work(now.timestamp() + due_in_h * HOUR, hours * HOUR)])


def dip(at: int, length: int = 48, base: float = 400.0, low: float = 100.0) -> np.ndarray:
    series = np.full(length, base)
    series[at] = low
    return series


def hour_of(when: datetime, now: datetime = NOW) -> float:
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    return (when - hour0).total_seconds() / HOUR


# --- choices -------------------------------------------------------------------------------


def test_a_clean_hour_later_today_is_chosen() -> None:
    result = plan(NOW, [job("m", 1, 24)], [pool()], {"DE": dip(5)}, params=EXACT)
    assert result.launch == [] and len(result.later) == 1
    planned = result.later[0]
    assert planned.start == NOW + timedelta(hours=5) and planned.reason == "cleanest"
    assert planned.expected_gco2e == pytest.approx(0.84 * 100)
    assert planned.baseline_gco2e == pytest.approx(0.84 * 400)
    assert result.saving_pct == pytest.approx(75.0)


def test_a_clean_hour_now_launches_now() -> None:
    result = plan(NOW, [job("m", 1, 24)], [pool()], {"DE": dip(0)}, params=EXACT)
    assert [j.group for j in result.launch] == ["m"] and result.launch[0].start == NOW


def test_a_cleaner_zone_now_beats_waiting() -> None:
    pools = [pool("de", "DE"), pool("no", "NO")]
    forecasts = {"DE": dip(3, low=200.0), "NO": np.full(48, 30.0)}
    result = plan(NOW, [job("m", 2, 24)], pools, forecasts, params=EXACT)
    assert [(j.pool, j.start) for j in result.launch] == [("no", NOW)]
    assert result.launch[0].deployment == "infer-no"


def test_runs_are_costed_over_their_hours_from_mid_hour() -> None:
    now = NOW + timedelta(minutes=30)
    series = np.array([100.0, 300.0, 300.0] + [500.0] * 45)
    result = plan(now, [job("m", 1, 1.5, now)], [pool()], {"DE": series}, params=EXACT)
    # Forced now (latest start within the margin): half an hour at 100, half at 300.
    assert result.launch[0].reason == "deadline"
    assert result.launch[0].expected_gco2e == pytest.approx(0.84 * 200)


def test_capacity_is_respected() -> None:
    forecasts = {"DE": dip(4)}
    groups = [job(f"m{i}", 1, 24) for i in range(3)]
    result = plan(NOW, groups, [pool(jobs=1)], forecasts, params=EXACT)
    starts = sorted(hour_of(j.start) for j in result.jobs)
    assert 4 in starts and len(set(starts)) == 3  # one takes the dip, one job an hour


def test_capacity_already_committed_is_respected() -> None:
    busy = {"a": [0, 0, 0, 0, 1]}  # a running job holds hour 4
    result = plan(NOW, [job("m", 1, 24)], [pool(jobs=1)], {"DE": dip(4)}, params=EXACT, busy=busy)
    assert hour_of(result.jobs[0].start) != 4


def test_latest_safe_start_within_the_margin_runs_now() -> None:
    # Cleaner in two hours, but the latest safe start is 30 min away.
    result = plan(NOW, [job("m", 2, 2.5)], [pool()], {"DE": dip(2)}, params=EXACT)
    assert [(j.group, j.reason) for j in result.launch] == [("m", "deadline")]


def test_the_safety_margin_comes_off_the_deadline() -> None:
    # 1 h of work due in 2.5 h: the dip at hour 1 fits, unless 1 h of safety is kept.
    params = PlannerParams(safety_margin_s=3600.0, forecast_margin_s=0.0)
    series = dip(2)
    exact = plan(NOW, [job("m", 1, 3)], [pool()], {"DE": series}, params=EXACT)
    safe = plan(NOW, [job("m", 1, 3)], [pool()], {"DE": series}, params=params)
    assert hour_of(exact.jobs[0].start) == 2
    assert hour_of(safe.jobs[0].start) < 2
    assert safe.jobs[0].deadline == NOW + timedelta(hours=2)


def test_a_missed_deadline_is_reported_late_not_launched() -> None:
    result = plan(NOW, [job("m", 3, 2)], [pool()], {"DE": dip(0)}, params=EXACT)
    assert result.launch == [] and [j.reason for j in result.late] == ["late"]


def test_no_signal_runs_by_deadline_alone() -> None:
    groups = [job("big", 1, 24), WorkGroup("tiny", [Work(NOW.timestamp() + 24 * HOUR, 10.0)])]
    result = plan(NOW, groups, [pool(jobs=2)], {}, params=EXACT)
    # Enough work runs at once; a job below the minimum size waits for company until
    # its latest safe start.
    assert [(j.group, j.reason) for j in result.launch] == [("big", "no signal")]
    (tiny,) = result.later
    assert tiny.group == "tiny" and tiny.reason == "aggregating"
    assert hour_of(tiny.start) == 23 and tiny.expected_gco2e is None


def test_a_forecast_shorter_than_the_window_is_used_as_far_as_it_goes() -> None:
    short = dip(3, length=6)
    result = plan(NOW, [job("m", 1, 24)], [pool()], {"DE": short}, params=EXACT)
    assert hour_of(result.jobs[0].start) == 3 and result.jobs[0].reason == "cleanest"
    # A run longer than the forecast has no signal: it goes now.
    result = plan(NOW, [job("m", 8, 24)], [pool()], {"DE": short}, params=EXACT)
    assert result.launch[0].reason == "no signal"


def test_small_work_waits_for_the_cleanest_hour_as_one_job() -> None:
    due = NOW.timestamp() + 24 * HOUR
    tiny = WorkGroup("m", [Work(due + i, 20.0) for i in range(5)])  # 100 GPU-s in all
    result = plan(NOW, [tiny], [pool()], {"DE": dip(5)}, params=EXACT)
    (waiting,) = result.later
    assert waiting.units == (0, 1, 2, 3, 4) and waiting.reason == "aggregating"
    assert hour_of(waiting.start) == 5 and result.saving_pct == pytest.approx(75.0)


def test_small_work_is_never_planned_dirtier_than_running_now() -> None:
    due = NOW.timestamp() + 24 * HOUR
    tiny = WorkGroup("m", [Work(due, 100.0)])
    # Cleanest now: it runs now rather than wait for its last hour (400 g/kWh).
    (now,) = plan(NOW, [tiny], [pool()], {"DE": dip(0)}, params=EXACT).launch
    assert now.reason == "cleanest" and now.expected_gco2e == now.baseline_gco2e
    # A flat forecast: waiting costs nothing, so it waits as long as it safely can for
    # company to share its start-up.
    (flat,) = plan(NOW, [tiny], [pool()], {"DE": np.full(48, 300.0)}, params=EXACT).later
    assert hour_of(flat.start) == 23 and flat.expected_gco2e == pytest.approx(flat.baseline_gco2e)


def test_small_work_joins_the_job_of_the_earliest_deadline() -> None:
    due = NOW.timestamp() + 24 * HOUR
    # Arrived an hour apart, one of them since the slot was chosen: one job, one start-up.
    units = [Work(due, 50.0), Work(due + HOUR, 50.0)]
    pools = [pool(startup=120.0)]
    result = plan(NOW, [WorkGroup("m", units)], pools, {"DE": dip(5)}, params=EXACT)
    (joined,) = result.jobs
    assert joined.units == (0, 1) and hour_of(joined.start) == 5
    assert joined.kwh == pytest.approx(pools[0].kwh(100.0 + 120.0))


def test_enough_small_work_runs_as_one_job() -> None:
    due = NOW.timestamp() + 24 * HOUR
    # Enough of it: one job with every unit, oldest deadline first, in the clean hour.
    enough = WorkGroup("m", [Work(due + i, 100.0) for i in range(5)])
    result = plan(NOW, [enough], [pool()], {"DE": dip(0)}, params=EXACT)
    (launched,) = result.launch
    assert launched.units == (0, 1, 2, 3, 4) and launched.count == 5


def test_startup_is_paid_once_per_job() -> None:
    due = NOW.timestamp() + 24 * HOUR
    together = [WorkGroup("m", [Work(due, 600.0) for _ in range(6)])]
    apart = [WorkGroup(f"m{i}", [Work(due, 600.0)]) for i in range(6)]
    pools = [pool(jobs=6, startup=600.0)]
    one = plan(NOW, together, pools, {"DE": np.full(48, 100.0)}, params=EXACT)
    six = plan(NOW, apart, pools, {"DE": np.full(48, 100.0)}, params=EXACT)
    assert len(one.jobs) == 1 and len(six.jobs) == 6
    assert one.expected_gco2e < six.expected_gco2e
    assert one.jobs[0].kwh == pytest.approx(pools[0].kwh(3600 + 600))


def test_large_work_is_split_into_jobs_in_deadline_order() -> None:
    due = NOW.timestamp() + 24 * HOUR
    units = [Work(due + 60 * i, 3600.0) for i in range(10)]  # 10 GPU-hours
    result = plan(NOW, [WorkGroup("m", units)], [pool(jobs=4)], {}, params=EXACT)
    assert sorted(j.units for j in result.jobs) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]


def test_pools_from_pools_yaml_entries() -> None:
    spec = PoolSpec(
        deployment="infer/eu", zone="DE", gpus=2, watts_per_gpu=400, max_concurrent_jobs=3
    )
    (eu,) = pools_from_specs({"eu": spec})
    assert (eu.name, eu.deployment, eu.zone, eu.gpus, eu.max_concurrent_jobs) == (
        "eu",
        "infer/eu",
        "DE",
        2,
        3,
    )
    assert eu.kwh(3600) * 2 == pytest.approx(spec.energy_kwh(3600))  # 1 h of a 2-GPU job


def test_work_gpu_seconds_from_tokens() -> None:
    spec = ModelSpec.model_validate(
        {
            "weights": "w",
            "engine": {"tensor_parallel_size": 2},
            "context_length": 4096,
            "max_completion_tokens": 1024,
            "throughput_tokens_per_s": 500.0,
            "price_input_per_1m": 0,
            "price_output_per_1m": 0,
        }
    )
    assert work_gpu_seconds(10_000, spec) == pytest.approx(40.0)


def test_window_integral_handles_fractions_and_the_end() -> None:
    series = np.array([1.0, 2.0, 3.0])
    got = window_integral(series, np.array([0.5, 1.0, 2.5]), np.array([1.0, 2.0, 1.0]))
    assert got[:2] == pytest.approx([1.5, 5.0]) and math.isnan(got[2])


def test_empty_work_plans_nothing() -> None:
    assert plan(NOW, [], [pool()], {}) == Plan(NOW, [], [], [])


# --- guarantees, on random work ------------------------------------------------------------


def spans(result: Plan, now: datetime) -> list[tuple[str, int, int]]:
    """(pool, first hour, end hour) held by each job, hours from now's hour."""
    out = []
    for j in result.jobs:
        first = math.floor(hour_of(j.start, now) + 1e-9)
        last = max(first + 1, math.ceil(hour_of(j.end, now) - 1e-9))
        out.append((j.pool, first, last))
    return out


def edf_feasible(
    jobs: Sequence[tuple[float, float]],  # (run hours, deadline in hours from now's hour)
    limits: Sequence[int],
    busy: Sequence[Sequence[int]],
    off: float,
) -> bool:
    """Earliest deadline first, each job at its earliest finish: can all be on time?"""
    horizon = 400
    used = [list(b) + [0] * (horizon - len(b)) for b in busy]
    for run, deadline in sorted(jobs, key=lambda x: x[1]):
        best = None
        for p, limit in enumerate(limits):
            for s in range(horizon - 20):
                start = off + s  # slot s: s hours from now, holding every clock hour it touches
                end = max(s + 1, math.ceil(start + run - 1e-9))
                if start + run > deadline + 1e-9:
                    break
                if all(used[p][h] < limit for h in range(s, end)):
                    if best is None or start + run < best[0]:
                        best = (start + run, p, s, end)
                    break
        if best is None:
            return False
        for h in range(best[2], best[3]):
            used[best[1]][h] += 1
    return True


pools_st = st.lists(st.integers(1, 3), min_size=1, max_size=3)
jobs_st = st.lists(st.tuples(st.floats(0.05, 6.0), st.floats(0.5, 30.0)), min_size=1, max_size=14)
forecast_st = st.lists(st.floats(0.0, 800.0), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=pools_st,
    jobs=jobs_st,
    forecasts=st.lists(forecast_st, min_size=3, max_size=3),
    busy=st.lists(st.lists(st.integers(0, 3), max_size=8), min_size=3, max_size=3),
    minute=st.integers(0, 59),
    startup=st.sampled_from([0.0, 300.0]),
    min_job=st.sampled_from([0.0, 1800.0]),
)
def test_one_tick_respects_capacity_and_every_deadline_it_can(
    limits: list[int],
    jobs: list[tuple[float, float]],
    forecasts: list[list[float]],
    busy: list[list[int]],
    minute: int,
    startup: float,
    min_job: float,
) -> None:
    now = NOW + timedelta(minutes=minute)
    off = minute / 60
    pools = [pool(f"p{i}", f"Z{i}", n, startup) for i, n in enumerate(limits)]
    hour0 = now.replace(minute=0).timestamp()
    groups = [
        WorkGroup(f"g{i}", [Work(hour0 + due * HOUR, run * HOUR)])
        for i, (run, due) in enumerate(jobs)
    ]
    busy_by_pool = {p.name: busy[i] for i, p in enumerate(pools)}
    params = PlannerParams(safety_margin_s=0.0, min_job_gpu_s=min_job)
    result = plan(
        now,
        groups,
        pools,
        {f"Z{i}": np.array(f) for i, f in enumerate(forecasts)},
        params=params,
        busy=busy_by_pool,
    )

    assert sorted(j.group for j in result.jobs) == sorted(g.key for g in groups)
    used: dict[str, list[int]] = {p.name: list(busy_by_pool[p.name]) + [0] * 100 for p in pools}
    for name, first, last in spans(result, now):
        for h in range(first, last):
            used[name][h] += 1
    for p in pools:
        base = busy_by_pool[p.name]
        # Hours the running jobs had already filled stay as they were.
        assert all(
            u <= max(p.max_concurrent_jobs, base[h] if h < len(base) else 0)
            for h, u in enumerate(used[p.name])
        )
    for j in [*result.launch, *result.later]:
        assert j.end <= j.deadline + timedelta(seconds=1)
        assert j.start >= now
    assert all(j.start == now for j in result.launch)
    runs = [(startup / HOUR + run, due) for run, due in jobs]
    if edf_feasible(runs, limits, [busy_by_pool[p.name] for p in pools], off):
        assert result.late == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=pools_st,
    jobs=st.lists(st.tuples(st.floats(0.1, 5.0), st.floats(1.0, 30.0)), min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
    noise=st.sampled_from([0.0, 0.3]),
)
def test_replanning_every_hour_keeps_every_deadline_edf_could_keep(
    limits: list[int], jobs: list[tuple[float, float]], seed: int, noise: float
) -> None:
    """All work known at the start, the forecast redrawn (noisy) at every tick: the plans
    executed tick by tick miss nothing that earliest-deadline-first would meet."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(50, 600, size=(len(limits), 200))
    pools = [pool(f"p{i}", f"Z{i}", n) for i, n in enumerate(limits)]
    start = NOW + timedelta(minutes=15)
    due = {f"g{i}": (start.timestamp() + d * HOUR, r) for i, (r, d) in enumerate(jobs)}
    pending = {k: WorkGroup(k, [Work(t, r * HOUR)]) for k, (t, r) in due.items()}
    used = np.zeros((len(pools), 300), dtype=int)
    ended: dict[str, float] = {}
    for tick in range(60):
        if not pending:
            break
        now = start + timedelta(hours=tick)
        fc = truth[:, tick : tick + 48] * (1 + noise * rng.standard_normal((len(pools), 48)))
        result = plan(
            now,
            list(pending.values()),
            pools,
            {f"Z{i}": fc[i] for i in range(len(pools))},
            params=EXACT,
            busy={p.name: used[i, tick:].tolist() for i, p in enumerate(pools)},
        )
        for j in [*result.launch, *(x for x in result.late if x.start == now)]:
            p = int(j.pool[1:])
            run = due[j.group][1]
            used[p, tick : tick + max(1, math.ceil(0.25 + run - 1e-9))] += 1
            ended[j.group] = now.timestamp() + run * HOUR
            del pending[j.group]
    assert not pending
    assert (used <= np.array(limits)[:, None]).all()
    if edf_feasible([(r, d + 0.25) for r, d in jobs], limits, [[]] * len(limits), 0.25):
        assert all(ended[k] <= due[k][0] + 1e-6 for k in due)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=jobs_st,
    forecast=st.lists(st.floats(0.0, 800.0), min_size=1, max_size=40),
    minute=st.integers(0, 59),
    min_job=st.sampled_from([0.0, 1800.0, 1e9]),
)
def test_with_room_no_job_is_planned_dirtier_than_running_now(
    jobs: list[tuple[float, float]], forecast: list[float], minute: int, min_job: float
) -> None:
    now = NOW + timedelta(minutes=minute)
    hour0 = now.replace(minute=0).timestamp()
    groups = [
        WorkGroup(f"g{i}", [Work(hour0 + due * HOUR, run * HOUR)])
        for i, (run, due) in enumerate(jobs)
    ]
    params = PlannerParams(safety_margin_s=0.0, min_job_gpu_s=min_job)
    roomy = [pool(jobs=len(jobs), startup=300.0)]
    result = plan(now, groups, roomy, {"DE": np.array(forecast)}, params=params)
    for j in [*result.launch, *result.later]:
        if j.expected_gco2e is not None and j.baseline_gco2e is not None:
            assert j.expected_gco2e <= j.baseline_gco2e * (1 + 1e-6) + 1e-9
