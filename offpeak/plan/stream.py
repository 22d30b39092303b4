"""Replay the service's own workload: a seeded stream of small requests, planned tick by
tick the way the scheduler plans it, against the baselines and the optimum.

Requests arrive as a Poisson process at ``rate`` GPU-seconds per hour (sizes Gamma,
mean `REQUEST_GPU_S`; with ``diurnal`` the rate follows the day, peaking at 14:00 UTC)
in the first ``hours - deadline`` hours of the traces, each due ``deadline`` after its
arrival. Like `offpeak.plan.pending.pending_groups`, the requests of one minute of
deadline are one unit, all of one engine model. Pools are one per trace, one GPU a job,
``capacity`` jobs at a time (GPUs per pool), ``startup_s`` of engine load per job; a
launch on a full pool waits for a free place, first in first out.

- ``immediate``: every tick (hourly) runs what arrived since the last one, in the
  default pool.
- ``rolling_window``: the Carbon Aware SDK rule: every tick's arrivals as one job, at
  the lowest rolling mean of the forecast over its run before its earliest deadline,
  in the default pool; a full pool queues it.
- ``offpeak``: the scheduler's carbon policy (`offpeak.plan.policy.carbon`) on the very
  tick it would gather: pending groups, pools, forecasts, the jobs still running. Its
  launches take their requests as `open_job` does (due in their range, earliest first).
- ``optimal``: `offpeak.plan.optimal.stream_optimum`, with perfect knowledge.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from offpeak.carbon.traces import Trace
from offpeak.catalog.models import ModelRegistry, ModelSpec
from offpeak.errors import InvalidInput
from offpeak.plan.gather import forecast_hours
from offpeak.plan.pending import PendingGroup, PendingUnit
from offpeak.plan.planner import Pool, window_integral
from offpeak.plan.policy import Tick, carbon
from offpeak.plan.scenario import (
    FORECAST_HOURS,
    PUE,
    WATTS,
    Forecaster,
    Outcome,
    PolicyOutcomes,
    parse_forecast,
)

POLICIES = ("immediate", "rolling_window", "offpeak", "optimal")
REQUEST_GPU_S = 0.5  # mean GPU-seconds of one request
TOKENS_PER_GPU_S = 1000.0  # the stream's model: estimated tokens per GPU-second
MODEL = "stream"
_SHAPE = 2.0  # Gamma shape of request sizes (sums of them stay Gamma)
JOB_MAX_REQUESTS = 5000  # the setting's default (`job_max_requests`)


@dataclass(frozen=True)
class Stream:
    """Units (requests of one minute), in arrival order; times in hours from the start."""

    arrival: np.ndarray  # the unit's last request's arrival: ready at the next tick
    expires: np.ndarray  # the unit's earliest deadline
    spread: np.ndarray  # hours from its first to its last deadline
    count: np.ndarray  # requests
    work: np.ndarray  # GPU-seconds

    def __len__(self) -> int:
        return len(self.arrival)


def diurnal_shape(hours: np.ndarray, start: datetime) -> np.ndarray:
    """A day's rhythm with mean 1: 1.75 at 14:00 UTC, 0.25 at 02:00."""
    clock = (start.hour + hours) % 24
    return 1.0 + 0.75 * np.cos(2 * np.pi * (clock - 14) / 24)


def make_stream(
    rate: float, hours: int, deadline_h: float, start: datetime, seed: int, diurnal: bool = False
) -> Stream:
    """The seeded requests of ``rate`` GPU-seconds per hour, by minute."""
    last = hours - math.ceil(deadline_h) - 1
    if rate <= 0 or last < 1:
        raise InvalidInput("need a positive rate and a trace longer than the deadline")
    rng = np.random.default_rng(seed)
    minute = np.arange(last * 60)
    per_minute = np.full(len(minute), rate / REQUEST_GPU_S / 60)
    if diurnal:
        per_minute *= diurnal_shape(minute / 60, start)
    count = rng.poisson(per_minute)
    on = count > 0
    minute, count = minute[on], count[on]
    work = rng.gamma(count * _SHAPE, REQUEST_GPU_S / _SHAPE)
    first = (minute + 1 / (count + 1)) / 60
    arrival = (minute + count / (count + 1)) / 60
    return Stream(arrival, first + deadline_h, arrival - first, count, work)


@dataclass
class World:
    """Traces, the stream, pools: what every policy replays."""

    zones: list[str]
    truth: np.ndarray  # (pools, hours) gCO2e/kWh
    start: datetime
    stream: Stream
    capacity: int | None  # jobs (GPUs) per pool; None = unlimited
    startup_s: float
    rate: float
    diurnal: bool
    # Most requests one job takes (the scheduler splits bigger launches): with small
    # requests it caps a job's work below an hour, for offpeak and optimal alike.
    job_max_requests: int = JOB_MAX_REQUESTS

    @property
    def job_max_gpu_s(self) -> float:
        """A job's work at most, on average: its requests at their mean size."""
        return self.job_max_requests * REQUEST_GPU_S

    @property
    def pools(self) -> list[Pool]:
        places = self.capacity or 1_000_000
        return [
            Pool(f"{i}:{z}", f"sim-{z}", f"{i}:{z}", 1, WATTS, PUE, places, self.startup_s)
            for i, z in enumerate(self.zones)
        ]

    @property
    def kwh_per_gpu_s(self) -> float:
        return WATTS * PUE / 3.6e6

    def describe(self) -> str:
        cap = "unlimited" if self.capacity is None else f"{self.capacity} GPUs per pool"
        shape = ", diurnal" if self.diurnal else ""
        return (
            f"stream of {self.rate:g} GPU-s/h{shape} ({int(self.stream.count.sum()):,} requests), "
            f"pools {', '.join(self.zones)} ({cap}), start-up {self.startup_s:g} s"
        )


def world(
    traces: Sequence[Trace],
    *,
    rate: float,
    diurnal: bool = False,
    deadline_h: float = 24.0,
    capacity: int | None = None,
    startup_s: float = 30.0,
    seed: int = 0,
    days: int | None = None,
    job_max_requests: int = JOB_MAX_REQUESTS,
) -> World:
    """Align the traces by position (the shortest, or ``days``, sets the length)."""
    if not traces:
        raise InvalidInput("simulate needs at least one trace")
    if capacity is not None and capacity < 1:
        raise InvalidInput("capacity must be at least 1 GPU per pool")
    if startup_s < 0 or startup_s >= 3600:
        raise InvalidInput("start-up must be between 0 and 3600 seconds")
    if job_max_requests < 1:
        raise InvalidInput("a job must take at least one request")
    hours = min(t.hours for t in traces)
    if days is not None:
        hours = min(hours, days * 24)
    truth = np.stack([t.intensity[:hours] for t in traces])
    stream = make_stream(rate, hours, deadline_h, traces[0].start, seed, diurnal)
    zones = [t.zone for t in traces]
    return World(
        zones, truth, traces[0].start, stream, capacity, startup_s, rate, diurnal, job_max_requests
    )


class Runs:
    """Jobs as they run: per pool, places taken first come first served, and what each
    job did (pool, start, hours, GPU-seconds, requests late)."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.free = [[0.0] * (w.capacity or 0) for _ in w.zones]
        self.ends: list[list[float]] = [[] for _ in w.zones]
        self.jobs: list[tuple[int, float, float, float]] = []
        self.late = 0

    def run(self, p: int, at: float, work: float, due: np.ndarray, counts: np.ndarray) -> None:
        hours = (self.w.startup_s + work) / 3600  # one GPU a job
        start = at
        if self.w.capacity:
            start = max(at, heapq.heappop(self.free[p]))
            heapq.heappush(self.free[p], start + hours)
        heapq.heappush(self.ends[p], start + hours)
        self.jobs.append((p, start, hours, work))
        self.late += int(counts[due < start + hours - 1e-9].sum())

    def next_end(self) -> float | None:
        """When the next running job ends (a place frees), if any is running."""
        return min((ends[0] for ends in self.ends if ends), default=None)

    def active(self, p: int, t: float) -> int:
        """Jobs launched and not ended at ``t`` (running or queued): the state DB's count."""
        ends = self.ends[p]
        while ends and ends[0] <= t + 1e-6:  # ended on the hour: free at this tick
            heapq.heappop(ends)
        return len(ends)

    def outcome(self, policy: str) -> Outcome:
        w = self.w
        pool, start, hours, work = (np.array(c) for c in zip(*self.jobs, strict=True))
        padded = np.concatenate([w.truth, w.truth], axis=1)
        gco2e = np.empty(len(start))
        for p in range(len(w.zones)):
            on = pool == p
            gco2e[on] = window_integral(padded[p], start[on], hours[on]) / hours[on]
        kwh = (work + w.startup_s) * w.kwh_per_gpu_s
        return Outcome(
            policy, pool, start, float(gco2e @ kwh), float(kwh.sum()), self.late, jobs=len(start)
        )


def _cohorts(w: World) -> list[tuple[int, np.ndarray]]:
    """Per tick, the units that arrived since the last one."""
    tick = np.floor(w.stream.arrival).astype(np.int64) + 1
    bounds = np.searchsorted(tick, np.arange(tick[-1] + 2))
    return [
        (t, np.arange(bounds[t], bounds[t + 1]))
        for t in range(len(bounds) - 1)
        if bounds[t + 1] > bounds[t]
    ]


def run_immediate(w: World) -> Outcome:
    runs, s = Runs(w), w.stream
    for t, units in _cohorts(w):
        runs.run(0, float(t), float(s.work[units].sum()), s.expires[units], s.count[units])
    return runs.outcome("immediate")


def run_rolling_window(w: World, forecast: Forecaster) -> Outcome:
    """Each tick's arrivals at their best window on the forecast then; executed in the
    order of their planned starts, queued while the pool is full."""
    s, planned = w.stream, []
    for t, units in _cohorts(w):
        work = float(s.work[units].sum())
        hours = (w.startup_s + work) / 3600
        last = min(math.floor(s.expires[units].min() - t - hours + 1e-9), FORECAST_HOURS - hours)
        offsets = np.arange(max(0, int(last)) + 1)
        means = window_integral(forecast(t)[0], offsets, np.full(len(offsets), hours))
        planned.append((t + int(np.argmin(means)), t, work, units))
    runs = Runs(w)
    for at, _, work, units in sorted(planned, key=lambda x: (x[0], x[1])):
        runs.run(0, float(at), work, s.expires[units], s.count[units])
    return runs.outcome("rolling_window")


def registry() -> ModelRegistry:
    """One model whose token estimate is its GPU time."""
    spec = ModelSpec(
        weights="sim",
        context_length=4096,
        max_completion_tokens=1024,
        throughput_tokens_per_s=TOKENS_PER_GPU_S,
        price_input_per_1m=0,
        price_output_per_1m=0,
    )
    return ModelRegistry({MODEL: spec})


def run_offpeak(w: World, forecast: Forecaster) -> Outcome:
    """The carbon policy every hour on the requests pending then (see the module doc),
    and, with capacity, whenever a job ends while work is pending: the scheduler ticks
    every 30 s, so a freed place is taken at once, not at the next hour."""
    s, pools = w.stream, w.pools
    t0 = w.start.timestamp()
    index = {p.name: i for i, p in enumerate(pools)}
    reg = registry()
    left = s.count.copy()
    work_left = s.work.copy()
    first = np.round(t0 + s.expires * 3600).astype(np.int64)
    last = np.round(t0 + (s.expires + s.spread) * 3600).astype(np.int64)
    ready = np.floor(s.arrival).astype(np.int64) + 1
    runs = Runs(w)
    lo = arrived = 0
    t = float(ready[0])
    while arrived < len(s) or lo < arrived:
        if lo == arrived:
            t = max(t, float(ready[arrived]))
        arrived = int(np.searchsorted(ready, t, side="right"))
        pending = lo + np.flatnonzero(left[lo:arrived] > 0)
        units = tuple(
            PendingUnit(int(a), int(b), int(n), round(float(x) * TOKENS_PER_GPU_S))
            for a, b, n, x in zip(
                first[pending], last[pending], left[pending], work_left[pending], strict=True
            )
        )
        now = w.start + timedelta(hours=t)
        groups = [PendingGroup(MODEL, (MODEL,), units)]
        hour = math.floor(t + 1e-9)
        fc = forecast(hour, forecast_hours(groups, now))  # as far as `gather` reads it
        tick = Tick(
            now,
            groups,
            pools,
            reg,
            w.job_max_requests,
            {p.zone: fc[i] for i, p in enumerate(pools)},
            {p.name: [runs.active(i, t)] for i, p in enumerate(pools)},
        )
        for launch in carbon(tick).launches:
            a, b = launch.expires_between or (first[lo], last[arrived - 1])
            lo_i, hi_i = np.searchsorted(first[lo:arrived], [a, b + 1]) + lo
            take = np.zeros(hi_i - lo_i, dtype=np.int64)
            need = launch.max_requests
            for k, u in enumerate(range(lo_i, hi_i)):
                take[k] = min(need, left[u])
                need -= take[k]
                if need == 0:
                    break
            span = slice(lo_i, hi_i)
            share = np.where(left[span] > 0, take / np.maximum(left[span], 1), 0.0)
            work = work_left[span] * share
            left[span] -= take
            work_left[span] -= work
            runs.run(index[launch.pool], t, float(work.sum()), s.expires[span], take)
        while lo < arrived and left[lo] == 0:
            lo += 1
        following = float(hour + 1)
        end = runs.next_end()
        if w.capacity and lo < arrived and end is not None and t + 1e-6 < end < following:
            following = end
        t = following
    return runs.outcome("offpeak")


@dataclass
class StreamReport(PolicyOutcomes):
    world: World
    forecast: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    def notes(self) -> list[str]:
        opt = self.outcomes.get("optimal")
        if opt is None:
            return []
        if opt.bound:
            return ["optimal: a lower bound (the MILP did not finish in time; its relaxation)"]
        return ["optimal: exact (HiGHS; an LP when there is no start-up)"]

    def heading(self) -> str:
        return f"{self.world.describe()}, forecast {self.forecast}"


def simulate_stream(
    traces: Sequence[Trace],
    *,
    rate: float,
    diurnal: bool = False,
    deadline_h: float = 24.0,
    forecast: str = "perfect",
    capacity: int | None = None,
    startup_s: float = 30.0,
    seed: int = 0,
    days: int | None = None,
    policies: Sequence[str] = POLICIES,
    time_limit: float = 60.0,
) -> StreamReport:
    """Replay the traces with every policy on the same stream."""
    from offpeak.plan.optimal import stream_optimum

    parse_forecast(forecast)
    w = world(
        traces,
        rate=rate,
        diurnal=diurnal,
        deadline_h=deadline_h,
        capacity=capacity,
        startup_s=startup_s,
        seed=seed,
        days=days,
    )
    report = StreamReport(w, forecast)
    for name in ("immediate", *[p for p in policies if p != "immediate"]):
        if name == "immediate":
            report.outcomes[name] = run_immediate(w)
        elif name == "rolling_window":
            report.outcomes[name] = run_rolling_window(w, Forecaster(w.truth, forecast, seed + 1))
        elif name == "offpeak":
            report.outcomes[name] = run_offpeak(w, Forecaster(w.truth, forecast, seed + 1))
        elif name == "optimal":
            report.outcomes[name] = stream_optimum(w, time_limit)
        else:
            raise InvalidInput(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return report
