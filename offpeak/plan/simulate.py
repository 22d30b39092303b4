"""Replay a year of real grid carbon intensity with a seeded stream of GPU jobs, and
compare launch policies on the very same arrivals.

- ``immediate``: every job starts when it arrives, in the first pool with room (the
  default pool, the first trace, unless it is full).
- ``rolling_window``: the Carbon Aware SDK rule: on arrival, start at the minimum
  rolling mean of the job's length within its window, on the forecast issued then;
  one pool (the first trace).
- ``offpeak``: the planner (`offpeak.plan.planner.plan`), ticking hourly, on forecasts only.
- ``optimal``: the offline optimum with perfect knowledge: jobs x (pool, start hour)
  with each pool's capacity per hour, solved with HiGHS (`scipy.optimize.milp`). When
  the integer program does not finish in time, its LP relaxation is reported instead:
  a lower bound on emissions (``Outcome.bound``).

Time runs in whole hours from the traces' first hour; one pool per trace. Arrivals
are a Poisson process conditioned on the job count: ``n`` hours drawn with weights 4 on
workdays 08-18 UTC and 1 otherwise. Sizes are GPU-hours (lognormal, median 1 h, clipped
to 0.25-8 h); every job runs on one GPU, so its size is its run time. A job holds one
of its pool's ``capacity`` places for every hour it touches. Forecasts span 48 h:
``perfect`` is the truth, ``noisy:E`` the truth plus N(0, E x the trace's mean) (one
draw per hour, see `Forecaster`), ``persistence`` the last 24 h repeated. The
forecast-driven policies see the very same forecasts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from offpeak.carbon.traces import Trace
from offpeak.errors import ConfigError, InvalidInput
from offpeak.plan.planner import PlannerParams, Work, WorkGroup, plan, window_integral
from offpeak.plan.scenario import (
    FORECAST_HOURS,
    KWH_PER_HOUR,
    Forecaster,
    Ledger,
    Outcome,
    PolicyOutcomes,
    Scenario,
    outcome_of,
    parse_forecast,
    scenario,
)
from offpeak.plan.scenario import make_arrivals as make_arrivals
from offpeak.plan.scenario import resolve_trace as resolve_trace

POLICIES = ("immediate", "rolling_window", "offpeak", "optimal")


def run_immediate(sc: Scenario) -> Outcome:
    """Each job at its arrival, in the first pool with room (queued when all are full)."""
    ledger = Ledger(sc)
    n = len(sc.jobs)
    pool, start = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for j in range(n):
        a, size = int(sc.jobs.hour[j]), float(sc.jobs.size[j])
        options = [(ledger.earliest(p, a, size), p) for p in range(len(sc.zones))]
        start[j], pool[j] = min(options)
        ledger.take(int(pool[j]), int(start[j]), size)
    return outcome_of("immediate", sc, pool, start)


def run_rolling_window(sc: Scenario, forecast: Forecaster) -> Outcome:
    """Each job, on arrival, at the lowest rolling mean of the forecast over its length
    that still meets its deadline (earliest of ties), in the first pool only."""
    ledger = Ledger(sc)
    n = len(sc.jobs)
    start = np.zeros(n, dtype=np.int64)
    for j in range(n):
        a, size = int(sc.jobs.hour[j]), float(sc.jobs.size[j])
        last = min(math.floor(sc.jobs.deadline[j] - a - size + 1e-9), FORECAST_HOURS - size)
        offsets = np.arange(max(0, int(last)) + 1)
        means = window_integral(forecast(a)[0], offsets, np.full(len(offsets), size))
        s = next(
            (
                a + int(k)
                for k in np.argsort(means, kind="stable")
                if ledger.fits(0, a + int(k), size)
            ),
            ledger.earliest(0, a, size),
        )
        start[j] = s
        ledger.take(0, s, size)
    return outcome_of("rolling_window", sc, np.zeros(n, dtype=np.int64), start)


def run_offpeak(sc: Scenario, forecast: Forecaster, params: PlannerParams | None = None) -> Outcome:
    """The planner every hour on the jobs pending then; it launches what it plans for now
    (and late jobs, which it cannot save, at once). No safety margin: runs are exact."""
    params = params or PlannerParams(safety_margin_s=0.0)
    pools = sc.pools
    index = {p.name: i for i, p in enumerate(pools)}
    ledger = Ledger(sc)
    n = len(sc.jobs)
    pool, start = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    t0 = sc.start.timestamp()
    pending: list[int] = []
    arrived = 0
    t = int(sc.jobs.hour[0])
    while arrived < n or pending:
        if not pending:
            t = max(t, int(sc.jobs.hour[arrived]))
        while arrived < n and sc.jobs.hour[arrived] <= t:
            pending.append(arrived)
            arrived += 1
        fc = forecast(t)
        groups = [
            WorkGroup(
                str(j),
                (Work(t0 + sc.jobs.deadline[j] * 3600.0, float(sc.jobs.size[j]) * 3600.0),),
            )
            for j in pending
        ]
        busy = {
            p.name: ledger.used[i, t : t + FORECAST_HOURS].tolist() for i, p in enumerate(pools)
        }
        tick = plan(
            sc.start + timedelta(hours=t),
            groups,
            pools,
            {p.zone: fc[i] for i, p in enumerate(pools)},
            params=params,
            busy=busy,
        )
        now = tick.launch + [job for job in tick.late if job.start == tick.now]
        for job in now:
            j, p = int(job.group), index[job.pool]
            pool[j], start[j] = p, t
            ledger.take(p, t, float(sc.jobs.size[j]))
        launched = {int(job.group) for job in now}
        pending = [j for j in pending if j not in launched]
        t += 1
    return outcome_of("offpeak", sc, pool, start)


def run_optimal(sc: Scenario, time_limit: float = 60.0) -> Outcome:
    """The offline optimum (see the module doc); an LP bound when the MILP times out."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    jobs, npools = sc.jobs, len(sc.zones)
    padded = np.concatenate([sc.truth, sc.truth], axis=1)
    # One variable per (job, pool, start hour) that meets the deadline.
    vj, vp, vs = [], [], []
    for j in range(len(jobs)):
        a = int(jobs.hour[j])
        last = a + math.floor(jobs.deadline[j] - a - jobs.size[j] + 1e-9)
        for p in range(npools):
            hours = np.arange(a, last + 1)
            vj.append(np.full(len(hours), j))
            vp.append(np.full(len(hours), p))
            vs.append(hours)
    var_j, var_p, var_s = (np.concatenate(v).astype(np.int64) for v in (vj, vp, vs))
    size = jobs.size[var_j]
    cost = np.empty(len(var_j))
    for p in range(npools):
        on = var_p == p
        cost[on] = window_integral(padded[p], var_s[on], size[on]) * KWH_PER_HOUR

    n = len(jobs)
    if sc.capacity is None:  # jobs are independent: each takes its cheapest start
        order = np.lexsort((cost, var_j))
        first = np.searchsorted(var_j[order], np.arange(n))
        pick = order[first]
        return outcome_of("optimal", sc, var_p[pick], var_s[pick])

    # A late variable per job keeps an overloaded scenario solvable (counted as a miss).
    late_cost = 10.0 * float(cost.max()) * np.ones(n)
    c = np.concatenate([cost, late_cost])
    nvar = len(c)
    assign = coo_matrix(
        (np.ones(nvar), (np.concatenate([var_j, np.arange(n)]), np.arange(nvar))), shape=(n, nvar)
    )
    span = np.ceil(size - 1e-9).astype(np.int64)
    rep = np.repeat(np.arange(len(var_j)), span)
    hour = var_s[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span))
    cell = var_p[rep] * padded.shape[1] + hour
    cells, row = np.unique(cell, return_inverse=True)
    cap = coo_matrix((np.ones(len(rep)), (row, rep)), shape=(len(cells), nvar))
    constraints = [
        LinearConstraint(assign.tocsr(), 1, 1),
        LinearConstraint(cap.tocsr(), 0, sc.capacity),
    ]
    bounds = Bounds(0, 1)
    relaxed = milp(c, constraints=constraints, bounds=bounds, integrality=np.zeros(nvar))
    if relaxed.x is None:
        raise ConfigError(f"the optimal schedule's LP failed: {relaxed.message}")
    x, bound = relaxed.x, False
    if np.abs(x - np.round(x)).max() > 1e-6:
        exact = milp(
            c,
            constraints=constraints,
            bounds=bounds,
            integrality=np.ones(nvar),
            options={"time_limit": time_limit, "mip_rel_gap": 1e-4},
        )
        if exact.status == 0 and exact.x is not None:
            x = exact.x
        else:
            bound = True
    return _optimal_outcome(sc, x, c, var_j, var_p, var_s, bound)


def _optimal_outcome(
    sc: Scenario,
    x: np.ndarray,
    c: np.ndarray,
    var_j: np.ndarray,
    var_p: np.ndarray,
    var_s: np.ndarray,
    bound: bool,
) -> Outcome:
    n = len(sc.jobs)
    nv = len(var_j)
    # The placement of each job: its largest share (the only one when integral).
    best = np.full(n, -1)
    share = np.zeros(n)
    for v in np.flatnonzero(x[:nv] > 1e-9):
        j = var_j[v]
        if x[v] > share[j]:
            share[j], best[j] = x[v], v
    late = best < 0
    pool = np.where(late, 0, var_p[np.maximum(best, 0)])
    start = np.where(late, sc.jobs.hour, var_s[np.maximum(best, 0)])
    out = outcome_of("optimal", sc, pool, start)
    out.misses = int(np.round(x[nv:]).sum())
    if bound:  # the relaxation's value, fractional placements included
        out.gco2e = float(x[:nv] @ c[:nv]) + float(
            sc.emissions(np.zeros(n, dtype=np.int64), sc.jobs.hour.astype(np.float64)) @ x[nv:]
        )
        out.bound = True
    return out


# --- the whole comparison ----------------------------------------------------------------


@dataclass
class Report(PolicyOutcomes):
    scenario: Scenario
    forecast: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def notes(self) -> list[str]:
        opt = self.outcomes.get("optimal")
        if opt is not None and opt.bound:
            return ["optimal: the MILP did not finish in time; its LP relaxation is a lower bound"]
        return []

    def heading(self) -> str:
        sc = self.scenario
        cap = "unlimited" if sc.capacity is None else f"{sc.capacity} jobs per pool"
        return f"{len(sc.jobs)} jobs, pools {', '.join(sc.zones)} ({cap}), forecast {self.forecast}"


def simulate(
    traces: Sequence[Trace],
    *,
    jobs: int = 1000,
    deadline_h: float = 24.0,
    forecast: str = "perfect",
    capacity: int | None = None,
    seed: int = 0,
    policies: Sequence[str] = POLICIES,
) -> Report:
    """Replay the traces with every policy on the same arrivals."""
    parse_forecast(forecast)
    sc = scenario(traces, jobs=jobs, deadline_h=deadline_h, capacity=capacity, seed=seed)
    report = Report(sc, forecast)
    for name in ("immediate", *[p for p in policies if p != "immediate"]):
        if name == "immediate":
            report.outcomes[name] = run_immediate(sc)
        elif name == "rolling_window":
            report.outcomes[name] = run_rolling_window(sc, Forecaster(sc.truth, forecast, seed + 1))
        elif name == "offpeak":
            report.outcomes[name] = run_offpeak(sc, Forecaster(sc.truth, forecast, seed + 1))
        elif name == "optimal":
            report.outcomes[name] = run_optimal(sc)
        else:
            raise InvalidInput(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return report


def plot(report: Report, path: Path) -> None:
    """Intensity over a sample week with each policy's placements, and the savings."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'offpeak[plot]'") from exc
    sc = report.scenario
    length = min(168, sc.truth.shape[1])
    week0 = int(sc.jobs.hour[len(sc.jobs) // 2]) // 24 * 24
    week0 = max(0, min(week0, sc.truth.shape[1] - length))
    hours = np.arange(week0, week0 + length)
    fig, (top, lanes, bars) = plt.subplots(
        3, 1, figsize=(11, 8), height_ratios=[3, 2, 2], constrained_layout=True
    )
    lanes.sharex(top)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p, zone in enumerate(sc.zones):
        top.step(
            hours,
            sc.truth[p, week0 : week0 + length],
            where="post",
            color=colors[p % 10],
            label=zone,
        )
    top.set_ylabel("gCO2e/kWh")
    top.set_title(f"Sample week from {sc.start + timedelta(hours=week0):%Y-%m-%d}")
    top.legend(loc="upper right", fontsize="small", ncol=min(len(sc.zones), 7))
    names = list(report.outcomes)
    for row, name in enumerate(names):
        o = report.outcomes[name]
        shown = (o.start + sc.jobs.size > week0) & (o.start < week0 + length)
        for j in np.flatnonzero(shown):
            lanes.broken_barh(
                [(o.start[j], sc.jobs.size[j])],
                (row - 0.35, 0.7),
                color=colors[int(o.pool[j]) % 10],
                alpha=0.6,
            )
    lanes.set_yticks(range(len(names)), names)
    lanes.set_xlim(week0, week0 + length)
    lanes.set_xlabel("hour of the year (job placements, coloured by pool)")
    savings = report.savings()
    bars.bar(names, [savings[n] for n in names], color=colors[: len(names)])
    bars.set_ylabel("saving vs immediate (%)")
    for i, n in enumerate(names):
        bars.annotate(f"{savings[n]:.1f}%", (i, savings[n]), ha="center", va="bottom")
    low, high = bars.get_ylim()
    bars.set_ylim(low, high + 0.12 * (high - low))
    fig.savefig(path, dpi=110)
    plt.close(fig)
