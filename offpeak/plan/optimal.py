"""The offline optimum for a stream of divisible work (`offpeak.plan.stream`), with
perfect knowledge of arrivals and intensity.

Work is divisible: each tick's arrivals (a *cohort*) may run in any hour from that tick
on whose end is before the cohort's earliest deadline, in any pool, split over any
number of jobs. Per pool and hour, ``n`` jobs are running (at most the capacity) and
``z`` of them start there, each start costing the start-up's energy and GPU time;
a job carries on into the next hour only after a full hour of work (so an engine
cannot be kept warm for free across dirty hours). Emissions are each hour's energy
times that hour's true intensity. A late slack per cohort (at a prohibitive price)
keeps an overloaded case solvable and is counted as missed requests. A job takes at
most the world's `job_max_requests` (at the mean request size), as the scheduler splits
a bigger launch: when that is less than an hour's work, every job starts in the hour
it runs (a cap above an hour's work is not modelled).

With no start-up the integer variables vanish and the linear program is exact; with
no capacity either, each cohort simply takes the cleanest hour of its window. Else
HiGHS solves the MILP (`scipy.optimize.milp`) within a time limit; when it does not
prove optimality in time, the best lower bound it has (at least the LP relaxation's)
is reported instead, flagged ``bound``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from offpeak.errors import ConfigError
from offpeak.plan.scenario import Outcome
from offpeak.plan.stream import World

HOUR = 3600.0


def stream_optimum(w: World, time_limit: float = 60.0) -> Outcome:
    s = w.stream
    tick = np.floor(s.arrival).astype(np.int64) + 1
    cohorts, first = np.unique(tick, return_index=True)
    work = np.add.reduceat(s.work, first)
    count = np.add.reduceat(s.count, first)
    due = np.minimum.reduceat(s.expires, first)
    end = np.floor(due + 1e-9).astype(np.int64)  # hours h with h + 1 <= deadline
    npools = len(w.zones)
    hours = int(end.max()) + 1
    truth = np.concatenate([w.truth, w.truth], axis=1)[:, :hours]
    kwh = w.kwh_per_gpu_s
    price = truth * kwh  # gCO2e per GPU-second, per pool and hour

    # x[c, p, h] for every hour of each cohort's window.
    span = np.maximum(end - cohorts, 0)
    per = span * npools  # variables per cohort: pool-major, then hour
    var_c = np.repeat(np.arange(len(cohorts)), per)
    within = np.arange(len(var_c)) - np.repeat(np.cumsum(per) - per, per)
    width = np.repeat(np.maximum(span, 1), per)
    var_p = within // width
    var_h = np.repeat(cohorts, per) + within % width
    cost_x = price[var_p, var_h]
    nx, nc = len(var_c), len(cohorts)
    startup = w.startup_s

    if w.capacity is None and startup == 0:
        pick = np.full(nc, -1)
        order = np.lexsort((cost_x, var_c))
        pick[var_c[order][::-1]] = order[::-1]  # the cheapest variable of each cohort
        gco2e = float(cost_x[pick] @ work)
        late = span == 0
        jobs = len(np.unique(var_p[pick] * hours + var_h[pick]))
        return _outcome(gco2e, float(work.sum()) * kwh, int(count[late].sum()), False, jobs)

    late_price = 10.0 * float(price.max())
    cells = npools * hours
    with_jobs = startup > 0
    n0, z0 = nx + nc, nx + nc + cells
    nvar = nx + nc + (2 * cells if with_jobs else 0)
    c = np.concatenate([cost_x, np.full(nc, late_price)])
    if with_jobs:
        c = np.concatenate([c, np.zeros(cells), startup * price.ravel()])
    cell_of = var_p * hours + var_h
    every = np.arange(cells)
    later = every[every % hours > 0]  # cells with an hour before them in their pool
    m = _Rows()
    # Every cohort served (or late).
    r = m.add(nc, work, work)
    m.put(r + var_c, np.arange(nx), 1.0)
    m.put(r + np.arange(nc), nx + np.arange(nc), 1.0)
    if not with_jobs:
        # Work per pool and hour within its GPUs' hour (capacity is set: see above).
        r = m.add(cells, -np.inf, (w.capacity or 0) * HOUR)
        m.put(r + cell_of, np.arange(nx), 1.0)
    else:
        # Never more jobs in an hour than the work its cohorts could bring would fill:
        # a tight bound keeps the relaxation close (and the MILP quick) without capacity.
        # A job takes at most `job_max_gpu_s`: below an hour's work, no job carries on
        # into the next hour and each hour's work needs that many jobs.
        per_job = min(HOUR - startup, w.job_max_gpu_s)
        capped = w.job_max_gpu_s < HOUR - startup
        ready = np.bincount(var_h, weights=work[var_c], minlength=hours) / npools
        most = np.ceil(ready / per_job).astype(np.int64)
        if w.capacity is not None:
            most = np.minimum(most, w.capacity)
        # Work within the running jobs' hour, their start-ups taken off.
        r = m.add(cells, -np.inf, 0.0)
        m.put(r + cell_of, np.arange(nx), 1.0)
        m.put(r + every, n0 + every, -HOUR)
        m.put(r + every, z0 + every, startup)
        # Starts: z[h] >= n[h] - n[h - 1].
        r = m.add(cells, -np.inf, 0.0)
        m.put(r + every, n0 + every, 1.0)
        m.put(r + every, z0 + every, -1.0)
        m.put(r + later, n0 + later - 1, -1.0)
        # Carrying on: the jobs not started in h worked all of h - 1.
        r = m.add(cells, -np.inf, 0.0)
        m.put(r + later, n0 + later, HOUR)
        m.put(r + later, z0 + later, -HOUR)
        m.put(r + later, z0 + later - 1, -startup)
        feeds = np.flatnonzero(var_h % hours < hours - 1)
        m.put(r + cell_of[feeds] + 1, feeds, -1.0)
        if capped:
            r = m.add(cells, -np.inf, 0.0)  # work <= z * cap
            m.put(r + cell_of, np.arange(nx), 1.0)
            m.put(r + every, z0 + every, -w.job_max_gpu_s)
            r = m.add(cells, 0.0, 0.0)  # every job running started in its hour
            m.put(r + every, n0 + every, 1.0)
            m.put(r + every, z0 + every, -1.0)
    constraint = m.constraint(nvar)
    upper = np.full(nvar, np.inf)
    if with_jobs:
        upper[n0:z0] = np.tile(most, npools)
        upper[z0:] = np.tile(most, npools)
    box = Bounds(np.zeros(nvar), upper)
    integral = np.zeros(nvar)
    relaxed = milp(c, constraints=constraint, bounds=box, integrality=integral)
    if relaxed.x is None:
        raise ConfigError(f"the optimal schedule's LP failed: {relaxed.message}")
    x, value, bound = relaxed.x, float(relaxed.fun), False
    if with_jobs:
        integral[n0:] = 1
        exact = milp(
            c,
            constraints=constraint,
            bounds=box,
            integrality=integral,
            options={"time_limit": time_limit, "mip_rel_gap": 2e-3},
        )
        if exact.status == 0 and exact.x is not None:
            x, value = exact.x, float(exact.fun)
        else:
            dual = getattr(exact, "mip_dual_bound", None)
            if dual is not None and np.isfinite(dual):
                value = max(value, float(dual))
            bound = True
    late_work = x[nx : nx + nc]
    misses = int(np.round((late_work / np.maximum(work, 1e-12)) * count).sum())
    energy = float(x[:nx].sum()) + (startup * float(x[z0:].sum()) if with_jobs else 0.0)
    gco2e = value - late_price * float(late_work.sum()) + float(late_work @ price[0, cohorts])
    # Jobs: the starts of the schedule (without start-ups, one per cell that runs work).
    starts = x[z0:].sum() if with_jobs else np.count_nonzero(np.bincount(cell_of, x[:nx]) > 1e-6)
    jobs = int(np.round(starts))
    return _outcome(gco2e, (energy + float(late_work.sum())) * kwh, misses, bound, jobs)


def _outcome(gco2e: float, kwh: float, misses: int, bound: bool, jobs: int) -> Outcome:
    empty = np.zeros(0)
    return Outcome("optimal", empty, empty, gco2e, kwh, misses, bound=bound, jobs=jobs)


class _Rows:
    """A sparse constraint matrix built block by block."""

    def __init__(self) -> None:
        self.n = 0
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []

    def add(self, n: int, lo: np.ndarray | float, hi: np.ndarray | float) -> int:
        """``n`` new rows with their bounds; returns the first one's index."""
        first = self.n
        self.lo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,)))
        self.n += n
        return first

    def put(self, rows: np.ndarray, cols: np.ndarray, value: float) -> None:
        self.rows.append(np.asarray(rows))
        self.cols.append(np.asarray(cols))
        self.vals.append(np.full(len(rows), value))

    def constraint(self, nvar: int) -> LinearConstraint:
        matrix = coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.n, nvar),
        ).tocsr()
        return LinearConstraint(matrix, np.concatenate(self.lo), np.concatenate(self.hi))
