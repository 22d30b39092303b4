"""Launch policies: given the pending work, what to launch now, and where.

A policy is a pure function of a :class:`Tick` (pending work, pools, forecasts, the jobs
already running); `offpeak.plan.gather` gathers the tick and calls the one named by
``OFFPEAK_SCHEDULER_POLICY``: `carbon`, the planner (offpeak.plan.planner), or `immediate`,
everything at once in the default pool (for tests and demos).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from offpeak.carbon.signal import AVERAGE
from offpeak.catalog.models import ModelRegistry
from offpeak.plan import planner
from offpeak.plan.pending import PendingGroup, work_groups


@dataclass(frozen=True)
class Launch:
    """One job to start now: up to ``max_requests`` of a group (those due within
    ``expires_between``, inclusive, when set) on a pool's deployment."""

    group: PendingGroup
    max_requests: int
    deployment: str
    pool: str
    expires_between: tuple[int, int] | None = None


@dataclass(frozen=True)
class Tick:
    """What a policy decides from."""

    now: datetime
    groups: Sequence[PendingGroup]
    pools: Sequence[planner.Pool]  # the first is the default pool
    registry: ModelRegistry
    job_max_requests: int
    # Hourly gCO2e/kWh per zone from the current hour (absent or empty: no signal).
    forecasts: Mapping[str, np.ndarray] = field(default_factory=dict)
    # Jobs running per pool, per hour from the current one.
    busy: Mapping[str, Sequence[int]] = field(default_factory=dict)
    # Where each zone's forecast came from (`Forecast.source`), for the report.
    sources: Mapping[str, str] = field(default_factory=dict)
    # What the forecasts measure (`offpeak.carbon.signal`): one provider, one kind.
    signal: str = AVERAGE


@dataclass(frozen=True)
class Decision:
    launches: list[Launch]
    plan: planner.Plan | None = None  # the carbon policy's whole plan, for the report


LaunchPolicy = Callable[[Tick], Decision]


def free_places(tick: Tick) -> dict[str, int]:
    """Jobs each pool can start now: its capacity less the jobs active in it.

    No allowance beyond that (no job opened "in the queue" for when a place frees): an
    opened job becomes a flow run at once and nothing holds it back behind the running
    ones (the inference deployments have no concurrency limit), so a spare job would
    run alongside them, over the pool's limit. What waits stays pending, and the next
    tick (every `scheduler_interval`, 30 s by default) opens it when a place is free: a
    place idles at most that long, against jobs of minutes to hours that each spend
    their `startup_seconds` loading an engine anyway."""
    return {
        p.name: max(p.max_concurrent_jobs - (tick.busy.get(p.name) or [0])[0], 0)
        for p in tick.pools
    }


def immediate(tick: Tick) -> Decision:
    """Run whatever is pending at once in the default pool, in jobs of at most
    `job_max_requests`. On purpose regardless of the pool's capacity: this is the
    policy of tests and demos, where nothing should wait for a place (and the scale
    benchmark's drain, which opens all that is pending)."""
    pool, size = tick.pools[0], tick.job_max_requests
    return Decision(
        [
            Launch(group, size, pool.deployment, pool.name)
            for group in tick.groups
            for _ in range(-(-group.count // size))
        ]
    )


def carbon(tick: Tick) -> Decision:
    """Follow the planner: launch the jobs it starts now, and the late ones (they can no
    longer meet their deadline; running them at once is their best chance).

    A planned job of more than `job_max_requests` is several jobs, and a late one is
    placed wherever it finishes first, so the launches are capped by each pool's free
    places (`free_places`): the planner's jobs to start now first, then the late ones,
    each earliest deadline first (a late job must not take the place of one that can
    still make its deadline). What does not fit stays pending and is planned again at
    the next tick, so a tick claims at most the requests the pools can run now."""
    plan = planner.plan(
        tick.now,
        work_groups(tick.groups, tick.registry, tick.job_max_requests),
        tick.pools,
        tick.forecasts,
        busy=tick.busy,
    )
    groups = {g.engine_model: g for g in tick.groups}
    room = free_places(tick)
    launches: list[Launch] = []
    by_deadline = sorted(plan.launch, key=lambda j: j.deadline)
    for job in [*by_deadline, *sorted(plan.late, key=lambda j: j.deadline)]:
        group = groups[job.group]
        units = [group.units[i] for i in job.units]
        count = sum(u.count for u in units)
        between = (
            min(u.first_expires_at for u in units),
            max(u.last_expires_at for u in units),
        )
        size = tick.job_max_requests
        # Each launch claims the earliest-due requests left in the range (open_job).
        for start in range(0, count, size):
            if room[job.pool] <= 0:
                break
            room[job.pool] -= 1
            launches.append(
                Launch(group, min(size, count - start), job.deployment, job.pool, between)
            )
    return Decision(launches, plan)


POLICIES: dict[str, LaunchPolicy] = {"carbon": carbon, "immediate": immediate}
