"""The carbon-aware planner: what to launch now, where, and when the rest will run.

Pure: pending work, pools and hourly forecasts in, a :class:`Plan` out; no I/O. Time is
cut into hourly *slots*: slot ``s`` starts ``s`` hours from now, which is when the
scheduler's tick in that hour runs (hourly ticks at a fixed minute make this exact;
more frequent ticks simply re-plan in between). Forecasts and capacity are per clock
hour from the current one: a pool runs at most ``max_concurrent_jobs`` jobs in any
hour, and a job holds a place in every clock hour its run touches.

One tick, in order:

1. Each group's units are sorted by deadline and cut into jobs of at most
   ``max_job_gpu_s`` (never so long that the job's earliest deadline breaks).
2. *Reservation* (the deadline guarantee): in earliest-deadline-first order, every job
   reserves the place that finishes it soonest, given the capacity already committed
   (running jobs, earlier reservations); if that leaves a few jobs late, least-laxity
   order is tried as well. A job that cannot finish in time even so is *late*: it is
   placed after all others, at its earliest finish.
3. *Improvement*: biggest job first, each job gives up its reservation and takes the
   cleanest (pool, slot) that still meets its deadline and has room; the reservations
   of the others stay put, so every deadline the reservation pass met is still met.
   Work whose latest safe start is within ``forecast_margin_s`` runs now (in the
   cleanest pool with room) rather than bet on the forecast at the last minute;
   ``min_saving`` optionally asks a delay to beat running now by that fraction. Since
   running now is always among the choices, a job is never planned to emit more than
   running now, unless capacity or its deadline leaves it no such choice.

Small work (a job below ``min_job_gpu_s``, whose start-up costs more than its GPU time)
targets the cleanest slot of its window like any job; of equally clean slots it takes
the latest. Its units are one job with a single start-up, and work of the same group
that arrives before that slot joins the job at the next tick (units are cut into jobs
by deadline, so the newcomers land in the job of the earliest deadline), sharing the
start-up instead of paying its own.

Expected emissions are the job's energy (GPU time plus start-up, times watts and PUE)
times the forecast's mean over the run. A job with no forecast for any window it could
take ("no signal") keeps its reservation: it runs *now* whenever the pools have room
(waiting blind only adds risk), except small jobs, which wait for company until their
latest safe slot. The guarantee: whatever the forecasts say, a job is late only
if earliest-deadline-first with the committed capacity could not make it either (EDF is
exact for one pool running one job at a time: then only if no schedule could).

The passes themselves, on numpy arrays, are in :mod:`offpeak.plan.placement`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from offpeak.catalog.models import ModelSpec
from offpeak.catalog.pools import PoolSpec
from offpeak.errors import ConfigError
from offpeak.plan.placement import HOUR, RETRY_MAX_LATE, Placement, cut_jobs, separate
from offpeak.plan.placement import window_integral as window_integral
from offpeak.plan.targets import divisible_jobs


@dataclass(frozen=True)
class Pool:
    """A GPU pool in one carbon zone, as the planner sees it (see `pools_from_specs`)."""

    name: str
    deployment: str  # the Prefect deployment that runs inference on this pool
    zone: str  # carbon zone of its electricity (Electricity Maps zone id)
    gpus: int = 1  # GPUs one job uses: work of W GPU-seconds runs W / gpus seconds
    watts_per_gpu: float = 700.0
    pue: float = 1.2  # data-centre overhead: facility energy / IT energy
    max_concurrent_jobs: int = 1  # the pool's capacity, in jobs at a time
    startup_seconds: float = 120.0  # from launch to the first token (engine load)

    def kwh(self, gpu_seconds: float) -> float:
        """Energy drawn from the grid for ``gpu_seconds`` of GPU time."""
        return gpu_seconds * self.watts_per_gpu * self.pue / 3.6e6


def pools_from_specs(specs: Mapping[str, PoolSpec]) -> list[Pool]:
    """The pools of pools.yaml (`offpeak.catalog.pools.load_pools`), in order: the first is the
    default pool."""
    return [
        Pool(
            name,
            s.deployment,
            s.zone,
            s.gpus,
            s.watts_per_gpu,
            s.pue,
            s.max_concurrent_jobs,
            s.startup_seconds,
        )
        for name, s in specs.items()
    ]


@dataclass(frozen=True)
class Work:
    """A request, or requests aggregated upstream, that share one deadline."""

    expires_at: float  # unix seconds; the planner subtracts the safety margin
    gpu_seconds: float  # estimated work: see `work_gpu_seconds`


@dataclass(frozen=True)
class WorkGroup:
    """Pending work one engine serves (the requests of one engine model)."""

    key: str
    units: Sequence[Work]
    # The most work one job of the group may take: `job_max_requests` of its requests,
    # as the scheduler opens them (each job its own start-up and place in a pool).
    max_job_gpu_s: float = math.inf


@dataclass(frozen=True)
class PlannerParams:
    """The planner's knobs; the defaults suit 24 h completion windows."""

    safety_margin_s: float = 600.0  # deadline = expires_at - this (publishing, slack)
    forecast_margin_s: float = 3600.0  # work whose latest safe start is this close runs now
    min_saving: float = 0.0  # a hedge: delay only when the forecast saves this fraction
    min_job_gpu_s: float = 300.0  # smaller jobs wait for more work (start-up cost)
    max_job_gpu_s: float = 4 * 3600.0  # larger work is split into several jobs


@dataclass(frozen=True)
class PlannedJob:
    """One job of the plan: a slice of a group, a pool, a start."""

    group: str
    units: tuple[int, ...]  # indices into the group's units, oldest deadline first
    pool: str
    deployment: str
    start: datetime  # `Plan.now` for jobs to launch now
    end: datetime  # expected, start-up included
    deadline: datetime  # the earliest unit's expires_at minus the safety margin
    gpu_seconds: float
    kwh: float  # expected energy, start-up included
    expected_gco2e: float | None  # None where the forecast does not cover the run
    baseline_gco2e: float | None  # the same work run now in the default (first) pool
    reason: str  # cleanest | deadline | aggregating | no signal | capacity | late
    # Jobs of this group planned side by side from the same pool and slot (elastic use
    # of free places in a clean hour; each takes a deadline range of the units).
    parallel: int = 1

    @property
    def count(self) -> int:
        return len(self.units)


@dataclass(frozen=True)
class Plan:
    """A tick's decision. ``launch`` is what to start now; ``later`` is the rest with
    its planned slot (re-planned next tick); ``late`` are jobs that cannot meet their
    deadline any more (placed at their earliest finish, for the caller to fail or run)."""

    now: datetime
    launch: list[PlannedJob]
    later: list[PlannedJob]
    late: list[PlannedJob]

    @property
    def jobs(self) -> list[PlannedJob]:
        return [*self.launch, *self.later, *self.late]

    @property
    def expected_gco2e(self) -> float:
        """Expected emissions of the jobs whose runs the forecast covers."""
        return sum(j.expected_gco2e or 0.0 for j in self._costed())

    @property
    def baseline_gco2e(self) -> float:
        """The same jobs run now in the default pool."""
        return sum(j.baseline_gco2e or 0.0 for j in self._costed())

    @property
    def saving_pct(self) -> float | None:
        base = self.baseline_gco2e
        return 100.0 * (base - self.expected_gco2e) / base if base > 0 else None

    def _costed(self) -> list[PlannedJob]:
        return [
            j for j in self.jobs if j.expected_gco2e is not None and j.baseline_gco2e is not None
        ]


def work_gpu_seconds(tokens: float, spec: ModelSpec) -> float:
    """GPU-seconds to generate ``tokens`` with a model: its per-job throughput times the
    GPUs one engine spans (tensor parallelism)."""
    gpus = int(spec.engine.get("tensor_parallel_size", 1))
    return tokens / spec.throughput_tokens_per_s * gpus


def plan(
    now: datetime,
    groups: Sequence[WorkGroup],
    pools: Sequence[Pool],
    forecasts: Mapping[str, Sequence[float] | np.ndarray],
    *,
    params: PlannerParams | None = None,
    busy: Mapping[str, Sequence[int]] | None = None,
) -> Plan:
    """Plan one tick.

    ``forecasts`` maps a zone to hourly gCO2e/kWh starting at the current hour; a
    missing or empty one means no signal for that zone, a short one covers only its
    hours. ``busy`` maps a pool name to the jobs already running in it per hour from the
    current hour. The first pool is the default, the baseline of the expected saving.
    """
    if not pools or all(p.max_concurrent_jobs <= 0 for p in pools):
        raise ConfigError("the planner needs at least one pool that can run a job")
    params = params or PlannerParams()
    now_s = now.timestamp()
    hour0 = math.floor(now_s / HOUR) * HOUR
    targeted, covered = divisible_jobs(groups, pools, forecasts, busy or {}, params, now_s, hour0)
    jobs = cut_jobs(groups, pools, params, now_s, hour0, targeted, covered)
    if len(jobs.work) == 0:
        return Plan(now, [], [], [])
    tick = Placement(jobs, pools, forecasts, params, busy or {}, (now_s - hour0) / HOUR)
    late = tick.reserve()
    # The cut joined units on the pools' speed alone; a join that capacity made late
    # (its start pushed past the hour others hold) may be on time as separate jobs. With
    # many late, the pools are overloaded and splitting only adds start-ups.
    joined = [j for j in late if len(jobs.units[j]) > 1]
    if joined and len(late) <= RETRY_MAX_LATE:
        jobs = separate(jobs, joined, groups, params, hour0)
        tick = Placement(jobs, pools, forecasts, params, busy or {}, (now_s - hour0) / HOUR)
        late = tick.reserve()
    # A join may also make *another* job late: its run spilling into the hour that one
    # needed. Then every join of the cut is undone, if that leaves fewer late.
    joined = [j for j, u in enumerate(jobs.units) if len(u) > 1 and jobs.target[j] is None]
    if late and joined and len(late) <= RETRY_MAX_LATE:
        apart = separate(jobs, joined, groups, params, hour0)
        retry = Placement(apart, pools, forecasts, params, busy or {}, (now_s - hour0) / HOUR)
        fewer = retry.reserve()
        if len(fewer) < len(late):
            jobs, tick, late = apart, retry, fewer
    tick.improve(set(late))
    tick.place_late(late)

    return _plan_of(now, groups, pools, tick)


def _plan_of(
    now: datetime, groups: Sequence[WorkGroup], pools: Sequence[Pool], tick: Placement
) -> Plan:
    """The jobs as `PlannedJob`s, earliest deadline first, looked up in bulk."""
    order = np.array(tick.order)
    where = np.array([tick.placed[j] for j in tick.order]).reshape(-1, 2)
    p, s = where[:, 0], where[:, 1]
    seen = s < tick.slots
    expected = np.full(len(order), np.nan)
    expected[seen] = tick.cost[order[seen], p[seen], s[seen]]
    run_s = tick.dur[order, p] * HOUR
    hour0 = now - timedelta(hours=tick.off)
    launch: list[PlannedJob] = []
    later: list[PlannedJob] = []
    late: list[PlannedJob] = []
    for j, pi, si, run, kwh, exp, base, due, work in zip(
        tick.order,
        p.tolist(),
        s.tolist(),
        run_s.tolist(),
        tick.energy[order, p].tolist(),
        expected.tolist(),
        tick.cost[order, 0, 0].tolist(),
        tick.jobs.deadline[order].tolist(),
        tick.jobs.work[order].tolist(),
        strict=True,
    ):
        pool = pools[pi]
        start = now + timedelta(hours=si)
        job = PlannedJob(
            group=groups[tick.jobs.group[j]].key,
            units=tick.jobs.units[j],
            pool=pool.name,
            deployment=pool.deployment,
            start=start,
            end=start + timedelta(seconds=run),
            deadline=hour0 + timedelta(hours=due),
            gpu_seconds=work,
            kwh=kwh,
            expected_gco2e=None if math.isnan(exp) else exp,
            baseline_gco2e=None if math.isnan(base) else base,
            reason=tick.reason[j],
            parallel=tick.jobs.parallel[j],
        )
        if job.reason == "late":
            late.append(job)
        else:
            (launch if si == 0 else later).append(job)
    return Plan(now, launch, later, late)
