"""The simulator: arrivals, forecasts, the policies on shipped traces, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from offpeak.carbon.traces import Trace, load_trace, shipped_traces
from offpeak.cli import main
from offpeak.errors import InvalidInput
from offpeak.plan.simulate import (
    POLICIES,
    Forecaster,
    make_arrivals,
    parse_forecast,
    resolve_trace,
    simulate,
)

OFFPEAK = Path(sys.executable).with_name("offpeak")
START = datetime(2022, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def de_gb() -> list[Trace]:
    paths = shipped_traces()
    return [load_trace(paths["DE"]), load_trace(paths["GB"])]


def test_arrivals_are_seeded_and_within_the_year() -> None:
    one = make_arrivals(500, 8760, 24.0, START, seed=3)
    assert np.array_equal(one.hour, make_arrivals(500, 8760, 24.0, START, seed=3).hour)
    assert (np.diff(one.hour) >= 0).all() and one.hour.max() + 24 < 8760
    assert one.size.min() >= 0.25 and one.size.max() <= 8.0
    assert np.allclose(one.deadline - one.hour, 24.0)
    # More arrivals in working hours on workdays (Jan 1 2022 is a Saturday).
    day, hour = (5 + one.hour // 24) % 7, one.hour % 24
    working = (day < 5) & (hour >= 8) & (hour < 18)
    assert working.mean() > 0.5


def test_forecast_modes() -> None:
    truth = np.arange(2 * 100, dtype=float).reshape(2, 100)
    assert parse_forecast("noisy:0.05") == ("noisy", 0.05)
    with pytest.raises(InvalidInput):
        parse_forecast("psychic")
    assert np.array_equal(Forecaster(truth, "perfect", 0)(10, 5), truth[:, 10:15])
    persistence = Forecaster(truth, "persistence", 0)(30, 48)
    assert np.array_equal(persistence[:, :24], truth[:, 6:30])
    assert np.array_equal(persistence[:, 24:], truth[:, 6:30])
    noisy = Forecaster(truth, "noisy:0.1", 7)
    # One error per hour: every forecast issued for an hour agrees on it.
    assert np.allclose(noisy(10, 5)[:, 2:], noisy(12, 3))
    assert not np.allclose(noisy(10, 5), truth[:, 10:15])


def test_policies_on_the_same_arrivals(de_gb: list[Trace]) -> None:
    report = simulate(de_gb, jobs=60, forecast="noisy:0.05", capacity=1, seed=1)
    assert list(report.outcomes) == list(POLICIES)
    out = report.outcomes
    assert out["offpeak"].misses == 0 and out["optimal"].misses == 0
    assert out["optimal"].gco2e <= out["offpeak"].gco2e + 1e-6
    assert out["optimal"].gco2e <= out["immediate"].gco2e + 1e-6
    assert out["offpeak"].gco2e < out["immediate"].gco2e
    assert (out["rolling_window"].pool == 0).all()  # the SDK rule: one pool
    assert np.allclose([o.kwh for o in out.values()], out["immediate"].kwh)
    # Capacity: one job per pool and hour, for every policy that places jobs.
    for name in ("immediate", "rolling_window", "offpeak", "optimal"):
        o = out[name]
        held = np.zeros((2, 9000), dtype=int)
        for p, s, size in zip(o.pool, o.start, report.scenario.jobs.size, strict=True):
            held[p, int(s) : int(s) + int(np.ceil(size))] += 1
        assert held.max() <= 1, name


def test_json_shape(de_gb: list[Trace]) -> None:
    data = simulate(de_gb[:1], jobs=40, seed=2).to_json()
    assert set(data) == {"policies", "savings_vs_immediate_pct"}
    assert set(data["policies"]) == set(POLICIES) == set(data["savings_vs_immediate_pct"])
    for values in data["policies"].values():
        assert set(values) == {"gco2e", "deadline_misses", "mean_intensity"}
    assert data["savings_vs_immediate_pct"]["immediate"] == 0.0
    # One pool, unlimited capacity, perfect forecasts: offpeak finds the optimum.
    assert data["policies"]["offpeak"]["gco2e"] == pytest.approx(
        data["policies"]["optimal"]["gco2e"]
    )


def test_resolve_trace_by_zone_or_path(tmp_path: Path) -> None:
    assert resolve_trace("GB").zone == "GB"
    with pytest.raises(InvalidInput, match="neither a file nor a shipped zone"):
        resolve_trace("ATLANTIS")


def simulate_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(OFFPEAK), "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_cli_json_on_two_shipped_traces() -> None:
    paths = shipped_traces()
    done = simulate_cli(
        "--trace", str(paths["DE"]), "--trace", "GB", "--jobs", "30", "--capacity", "2", "--json"
    )
    data = json.loads(done.stdout)
    assert set(data["policies"]) == set(POLICIES)
    assert data["policies"]["offpeak"]["deadline_misses"] == 0
    assert data["savings_vs_immediate_pct"]["offpeak"] > 0


def run_cli(*args: str, ok: bool = True) -> Result:
    """In-process, for the cases that need no real process."""
    done = CliRunner().invoke(main, ["simulate", *args])
    assert (done.exit_code == 0) == ok, done.output
    return done


def test_cli_table_and_plot_from_a_csv(tmp_path: Path) -> None:
    # A plain CSV in the newer header spelling, ten days long.
    rows = ["Datetime (UTC),Zone id,Carbon intensity gCO₂eq/kWh (Life cycle)"]
    for h in range(240):
        when = f"2022-01-{1 + h // 24:02d} {h % 24:02d}:00:00"
        rows.append(f"{when},XX,{300 + 100 * np.sin(h / 4):.1f}")
    csv = tmp_path / "xx.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    png = tmp_path / "out.png"
    args = ["--trace", str(csv), "--jobs", "8", "--deadline", "12h", "--forecast", "persistence"]
    done = run_cli(*args, "--plot", str(png))
    assert "rolling_window" in done.stdout and "saving" in done.stdout
    assert png.read_bytes().startswith(b"\x89PNG")


def test_cli_refuses_bad_input() -> None:
    assert "neither a file" in run_cli("--trace", "ATLANTIS", ok=False).stderr
    assert "noisy:E" in run_cli("--forecast", "soon", "--jobs", "5", ok=False).stderr
    assert "--deadline" in run_cli("--deadline", "forever", ok=False).stderr
