"""The stream workload: requests by minute, the policies on it, the divisible optimum,
and `offpeak simulate --workload stream`."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from offpeak.carbon.traces import Trace
from offpeak.cli import main
from offpeak.plan.optimal import stream_optimum
from offpeak.plan.scenario import Forecaster
from offpeak.plan.stream import (
    POLICIES,
    REQUEST_GPU_S,
    Runs,
    World,
    make_stream,
    run_offpeak,
    simulate_stream,
    world,
)

START = datetime(2022, 1, 1, tzinfo=UTC)


def wave(zone: str, days: int = 5, phase: float = 0.0) -> Trace:
    """A day-long wave with some hour-to-hour noise: clean nights, dirty evenings."""
    h = np.arange(days * 24)
    noise = np.random.default_rng(len(zone)).normal(0.0, 15.0, len(h))
    return Trace(zone, START, 300.0 + 150.0 * np.sin(2 * np.pi * (h + phase) / 24) + noise)


def test_the_stream_is_seeded_by_minute_at_its_rate_and_follows_the_day() -> None:
    one = make_stream(600.0, 24 * 30, 24.0, START, seed=4)
    again = make_stream(600.0, 24 * 30, 24.0, START, seed=4)
    assert np.array_equal(one.work, again.work) and np.array_equal(one.count, again.count)
    hours = 24 * 30 - 25
    assert one.work.sum() / hours == pytest.approx(600.0, rel=0.02)
    assert one.count.sum() / hours == pytest.approx(600.0 / REQUEST_GPU_S, rel=0.02)
    assert (np.diff(one.arrival) > 0).all() and np.allclose(
        one.expires - one.arrival, 24.0, atol=1 / 60
    )
    day = make_stream(600.0, 24 * 30, 24.0, START, seed=4, diurnal=True)
    clock = np.floor(day.arrival) % 24
    afternoon, night = day.work[(clock >= 12) & (clock < 16)], day.work[clock < 4]
    assert afternoon.sum() > 3 * night.sum()


def test_policies_on_the_same_stream_meet_every_deadline_and_offpeak_saves() -> None:
    report = simulate_stream([wave("AA")], rate=600.0, forecast="noisy:0.05", startup_s=30.0)
    assert list(report.outcomes) == list(POLICIES)
    out, saved = report.outcomes, report.savings()
    assert all(o.misses == 0 for o in out.values())
    assert out["optimal"].gco2e <= out["offpeak"].gco2e <= out["immediate"].gco2e
    assert saved["offpeak"] > saved["rolling_window"] and saved["offpeak"] > 10.0
    # One start-up per tick for the baselines; offpeak shares them.
    assert out["offpeak"].jobs < out["immediate"].jobs == out["rolling_window"].jobs


def test_capacity_is_respected_and_queues_first_come_first_served() -> None:
    w = world([wave("AA", days=3)], rate=600.0, capacity=1, startup_s=0.0)
    runs = Runs(w)
    none = np.zeros(0)
    runs.run(0, 1.0, 1800.0, none, none)
    runs.run(0, 1.0, 1800.0, none, none)  # full: waits for the first
    runs.run(0, 1.2, 360.0, none, none)
    assert [start for _, start, _, _ in runs.jobs] == pytest.approx([1.0, 1.5, 2.0])
    assert runs.active(0, 1.9) == 2 and runs.active(0, 2.0) == 1

    held = []
    original = Runs.run

    def watch(self: Runs, p: int, at: float, work: float, due: np.ndarray, n: np.ndarray) -> None:
        original(self, p, at, work, due, n)
        held.append(self.jobs[-1])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runs, "run", watch)
        out = run_offpeak(w, Forecaster(w.truth, "perfect", 1))
    assert out.misses == 0
    ends = sorted((s, s + h) for _, s, h, _ in held)
    assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(ends))


def two_pools(capacity: int | None, startup: float) -> World:
    return world(
        [wave("AA", days=4), wave("BB", days=4, phase=8.0)],
        rate=1200.0,
        capacity=capacity,
        startup_s=startup,
    )


def test_the_optimum_without_start_up_is_each_cohort_in_its_cleanest_hour() -> None:
    free = stream_optimum(two_pools(None, 0.0))
    # With room to spare the LP (capacity set, never binding) agrees with the closed form.
    roomy = stream_optimum(two_pools(50, 0.0))
    assert not free.bound and not roomy.bound and free.misses == 0
    assert roomy.gco2e == pytest.approx(free.gco2e, rel=1e-6)
    # Less room, start-ups: never cheaper; and never dearer than what offpeak ran.
    tight = two_pools(1, 60.0)
    exact = stream_optimum(tight)
    assert exact.gco2e > free.gco2e
    ran = run_offpeak(tight, Forecaster(tight.truth, "perfect", 1))
    assert exact.gco2e <= ran.gco2e * (1 + 2e-3)


def test_the_optimums_jobs_take_at_most_job_max_requests_like_the_schedulers() -> None:
    def optimum(cap: int) -> tuple[float, int]:
        w = world([wave("AA", days=3)], rate=1200.0, startup_s=60.0, job_max_requests=cap)
        o = stream_optimum(w)
        assert not o.bound and o.misses == 0
        return o.gco2e, o.jobs

    free, capped = optimum(1_000_000), optimum(1000)  # 500 GPU-s a job
    assert capped[0] > free[0]
    # 2 days of arrivals at 1200 GPU-s/h: at least that many jobs of 500 GPU-s.
    assert capped[1] >= 2 * 24 * 1200 / 500 * 0.95 > free[1]
    # Offpeak runs under the same cap: never cheaper than its optimum.
    w = world([wave("AA", days=3)], rate=1200.0, startup_s=60.0, job_max_requests=1000)
    ran = run_offpeak(w, Forecaster(w.truth, "perfect", 1))
    assert ran.gco2e >= capped[0] * (1 - 2e-3)


def run_cli(*args: str, ok: bool = True) -> str:
    done = CliRunner().invoke(main, ["simulate", "--workload", "stream", *args])
    assert (done.exit_code == 0) == ok, done.output
    return done.stdout if ok else done.stderr


def csv_trace(tmp_path: Path, days: int = 4) -> str:
    rows = ["Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)"]
    for h in range(days * 24):
        rows.append(
            f"2022-01-{1 + h // 24:02d} {h % 24:02d}:00:00,XX,{300 + 120 * np.sin(h / 4):.1f}"
        )
    path = tmp_path / "xx.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def test_cli_stream_json_has_the_shape_of_the_jobs_workload(tmp_path: Path) -> None:
    out = run_cli(
        "--trace", csv_trace(tmp_path), "--trace", csv_trace(tmp_path),
        "--rate", "300", "--diurnal", "--capacity", "2", "--startup-seconds", "20",
        "--forecast", "persistence", "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert set(data) == {"policies", "savings_vs_immediate_pct"}
    assert set(data["policies"]) == set(POLICIES) == set(data["savings_vs_immediate_pct"])
    for values in data["policies"].values():
        assert set(values) == {"gco2e", "deadline_misses", "mean_intensity"}
    assert data["policies"]["offpeak"]["deadline_misses"] == 0


def test_cli_stream_table_says_how_optimal_was_found_and_refuses_bad_input(
    tmp_path: Path,
) -> None:
    out = run_cli("--trace", csv_trace(tmp_path), "--rate", "120", "--deadline", "12h")
    assert "rolling_window" in out and "optimal: exact" in out
    assert "--rate" in run_cli("--trace", "GB", ok=False)
    assert "--plot" in run_cli("--rate", "5", "--plot", str(tmp_path / "x.png"), ok=False)
    assert "--startup-seconds" in run_cli("--rate", "5", "--startup-seconds", "-1", ok=False)


def test_a_freed_place_is_taken_before_the_next_hour() -> None:
    # One GPU, jobs of at most 1,000 requests (500 GPU-s): an hour's arrivals are
    # several jobs, one at a time. The scheduler ticks every 30 s, so the next job
    # starts when a place frees; at hourly ticks the pool would run one job an hour
    # and fall behind.
    w = world([wave("AA", days=3)], rate=1800.0, capacity=1, startup_s=60.0, job_max_requests=1000)
    out = run_offpeak(w, Forecaster(w.truth, "perfect", 1))
    assert out.misses == 0
    assert any(abs(s - round(s)) > 1e-6 for s in out.start)
