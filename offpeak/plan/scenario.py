"""The simulator's world: a year of real grid intensity (one pool per trace), a seeded
stream of GPU jobs, the forecasts the policies see, and what a placement emitted.
`offpeak.plan.simulate` replays the policies on it."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from offpeak.carbon.traces import Trace, load_trace, shipped_traces
from offpeak.errors import InvalidInput
from offpeak.plan.planner import Pool, window_integral

FORECAST_HOURS = 48
WATTS, PUE = 700.0, 1.2  # one GPU per job: the same for every policy, so savings ignore it
KWH_PER_HOUR = WATTS * PUE / 1000
_FORECAST = re.compile(r"^(perfect|persistence|noisy:(\d+(?:\.\d+)?))$")


@dataclass(frozen=True)
class Arrivals:
    hour: np.ndarray  # arrival hour, sorted
    size: np.ndarray  # GPU-hours, also hours of run time
    deadline: np.ndarray  # hour by which each job must have finished

    def __len__(self) -> int:
        return len(self.hour)


def make_arrivals(n: int, hours: int, deadline_h: float, start: datetime, seed: int) -> Arrivals:
    """``n`` seeded jobs arriving in the first ``hours - deadline`` hours."""
    rng = np.random.default_rng(seed)
    last = hours - math.ceil(deadline_h) - 1
    if n < 1 or last < 1:
        raise InvalidInput("need at least one job and a trace longer than the deadline")
    h = np.arange(last)
    day = (start.weekday() + (start.hour + h) // 24) % 7
    workday = (day < 5) & ((start.hour + h) % 24 >= 8) & ((start.hour + h) % 24 < 18)
    weight = np.where(workday, 4.0, 1.0)
    hour = np.sort(rng.choice(last, size=n, p=weight / weight.sum()))
    size = np.clip(rng.lognormal(0.0, 0.8, n), 0.25, 8.0)
    return Arrivals(hour, size, hour + float(deadline_h))


def parse_forecast(spec: str) -> tuple[str, float]:
    """``perfect``, ``persistence`` or ``noisy:E`` -> (mode, relative error)."""
    match = _FORECAST.match(spec)
    if not match:
        raise InvalidInput(f"forecast {spec!r} is not perfect, persistence or noisy:E")
    return ("noisy", float(match.group(2))) if match.group(2) else (spec, 0.0)


class Forecaster:
    """Forecasts for every pool at an hour, as the planner would receive them.

    A noisy forecast's error for a given hour is drawn once: every forecast issued
    before that hour carries the same error, so a policy that re-plans hourly sees the
    same (wrong) picture as one that decides once, rather than many lucky draws."""

    def __init__(self, truth: np.ndarray, spec: str, seed: int) -> None:
        self.mode, self.error = parse_forecast(spec)
        self.series = truth
        if self.mode == "noisy":
            rng = np.random.default_rng(seed)
            scale = self.error * truth.mean(axis=1, keepdims=True)
            self.series = np.maximum(truth + rng.normal(0.0, 1.0, truth.shape) * scale, 0.0)

    def __call__(self, t: int, hours: int = FORECAST_HOURS) -> np.ndarray:
        ahead = np.arange(hours)
        idx = t - 24 + ahead % 24 if self.mode == "persistence" else t + ahead
        return self.series.take(idx, axis=1, mode="wrap")


@dataclass
class Scenario:
    """Traces (one pool each), arrivals and capacity: what every policy replays."""

    zones: list[str]
    truth: np.ndarray  # (pools, hours) gCO2e/kWh
    start: datetime
    jobs: Arrivals
    capacity: int | None  # concurrent jobs per pool; None = unlimited

    @property
    def pools(self) -> list[Pool]:
        places = self.capacity or len(self.jobs)
        return [
            Pool(f"{i}:{z}", f"sim-{z}", f"{i}:{z}", 1, WATTS, PUE, places, 0.0)
            for i, z in enumerate(self.zones)
        ]

    def emissions(self, pool: np.ndarray, start: np.ndarray) -> np.ndarray:
        """gCO2e of every job run from ``start`` in ``pool``, on the true intensity."""
        padded = np.concatenate([self.truth, self.truth], axis=1)
        out = np.empty(len(start))
        for p in range(len(self.zones)):
            on = pool == p
            out[on] = window_integral(padded[p], start[on], self.jobs.size[on])
        return out * KWH_PER_HOUR


@dataclass
class Outcome:
    """Where and when one policy ran every job, and what that emitted."""

    policy: str
    pool: np.ndarray
    start: np.ndarray
    gco2e: float
    kwh: float
    misses: int
    bound: bool = False  # optimal only: an LP lower bound, not a schedule
    jobs: int = 0  # jobs run (stream workload), each paying a start-up

    @property
    def mean_intensity(self) -> float:
        return self.gco2e / self.kwh if self.kwh else 0.0


class PolicyOutcomes:
    """Savings against `immediate`, and the JSON of `offpeak simulate`, from each policy's
    outcome on one workload (the job and the stream reports)."""

    outcomes: dict[str, Outcome]

    def savings(self) -> dict[str, float]:
        base = self.outcomes["immediate"].gco2e
        return {
            name: 100.0 * (base - o.gco2e) / base if base else 0.0
            for name, o in self.outcomes.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "policies": {
                name: {
                    "gco2e": round(o.gco2e, 1),
                    "deadline_misses": o.misses,
                    "mean_intensity": round(o.mean_intensity, 2),
                }
                for name, o in self.outcomes.items()
            },
            "savings_vs_immediate_pct": {k: round(v, 2) for k, v in self.savings().items()},
        }


def outcome_of(policy: str, sc: Scenario, pool: np.ndarray, start: np.ndarray) -> Outcome:
    gco2e = sc.emissions(pool, start)
    misses = int((start + sc.jobs.size > sc.jobs.deadline + 1e-9).sum())
    kwh = float(sc.jobs.size.sum() * KWH_PER_HOUR)
    return Outcome(policy, pool, start.astype(np.float64), float(gco2e.sum()), kwh, misses)


class Ledger:
    """Jobs per pool per hour, for the policies that place jobs one by one."""

    def __init__(self, sc: Scenario) -> None:
        self.limit = sc.capacity
        pad = int(sc.jobs.size.max()) + 2 * FORECAST_HOURS
        self.used = np.zeros((len(sc.zones), sc.truth.shape[1] + pad), dtype=np.int64)

    def fits(self, p: int, s: int, size: float) -> bool:
        return self.limit is None or bool(self.used[p, s : s + math.ceil(size)].max() < self.limit)

    def take(self, p: int, s: int, size: float) -> None:
        self.used[p, s : s + math.ceil(size)] += 1

    def earliest(self, p: int, s: int, size: float) -> int:
        while not self.fits(p, s, size):
            s += 1
        return s


def resolve_trace(name: str) -> Trace:
    """A trace from a CSV path, or the zone id of a trace shipped with offpeak."""
    path = Path(name)
    if path.is_file():
        return load_trace(path)
    shipped = shipped_traces()
    if name in shipped:
        return load_trace(shipped[name])
    raise InvalidInput(
        f"trace {name!r} is neither a file nor a shipped zone ({', '.join(shipped)})"
    )


def scenario(
    traces: Sequence[Trace],
    *,
    jobs: int = 1000,
    deadline_h: float = 24.0,
    capacity: int | None = None,
    seed: int = 0,
) -> Scenario:
    """Align the traces by position (the shortest sets the length) and draw arrivals."""
    if not traces:
        raise InvalidInput("simulate needs at least one trace")
    if capacity is not None and capacity < 1:
        raise InvalidInput("capacity must be at least 1 job per pool")
    hours = min(t.hours for t in traces)
    truth = np.stack([t.intensity[:hours] for t in traces])
    arrivals = make_arrivals(jobs, hours, deadline_h, traces[0].start, seed)
    return Scenario([t.zone for t in traces], truth, traces[0].start, arrivals, capacity)
