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


def immediate(tick: Tick) -> Decision:
    """Run whatever is pending at once in the default pool, in jobs of at most
    `job_max_requests`."""
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
    longer meet their deadline; running them at once is their best chance)."""
    plan = planner.plan(
        tick.now,
        work_groups(tick.groups, tick.registry),
        tick.pools,
        tick.forecasts,
        busy=tick.busy,
    )
    groups = {g.engine_model: g for g in tick.groups}
    launches: list[Launch] = []
    for job in [*plan.launch, *plan.late]:
        group = groups[job.group]
        units = [group.units[i] for i in job.units]
        count = sum(u.count for u in units)
        between = (
            min(u.first_expires_at for u in units),
            max(u.last_expires_at for u in units),
        )
        size = tick.job_max_requests
        launches += [
            Launch(group, min(size, count - start), job.deployment, job.pool, between)
            for start in range(0, count, size)
        ]
    return Decision(launches, plan)


POLICIES: dict[str, LaunchPolicy] = {"carbon": carbon, "immediate": immediate}
