"""One scheduler tick, gathered: the pending work in the state database, the pools and
the jobs running in them, the carbon forecasts; then the launch policy's answer.

The scheduler's task only opens the services and the provider and calls
:func:`plan_tick`; everything here runs without Prefect, so tests drive it with a real
database and an in-memory or replayed carbon provider.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from offpeak.carbon.signal import AVERAGE, CarbonProvider, signal_of
from offpeak.catalog.pools import PoolSpec, load_pools, pool_of_deployment
from offpeak.plan.chart import chart_markdown
from offpeak.plan.pending import PendingGroup, pending_groups
from offpeak.plan.planner import Plan, pools_from_specs
from offpeak.plan.policy import POLICIES, Launch, Tick
from offpeak.plan.report import plan_markdown
from offpeak.services import Services
from offpeak.state import jobs as state
from offpeak.state.models import Job

# The longest completion window (72 h) and the current hour: no deadline lies further.
MAX_FORECAST_HOURS = 73


@dataclass(frozen=True)
class Planned:
    """What a tick decided: the jobs to start now, and the plan as Markdown."""

    launches: list[Launch]
    report: str  # per pool: the forecast, the chosen windows, the saving
    # The whole plan (the carbon policy's; None for `immediate`) and the pending groups
    # it was made from: where the expected times of waiting work come from.
    plan: Plan | None = None
    groups: Sequence[PendingGroup] = ()


def forecast_hours(groups: Sequence[PendingGroup], at: datetime) -> int:
    """Hours of forecast the planner can use: from the current hour to the one holding
    the latest pending deadline, at least one, at most `MAX_FORECAST_HOURS`."""
    if not groups:
        return 1
    last = max(u.last_expires_at for g in groups for u in g.units)
    hours = math.ceil((last - at.timestamp()) / 3600) + 1
    return min(max(hours, 1), MAX_FORECAST_HOURS)


def unbroken(dense: np.ndarray) -> np.ndarray:
    """An hourly series up to its first gap (NaN): the planner reads a forecast as
    covering every hour up to its length, so it must not plan across a missing hour."""
    gaps = np.flatnonzero(np.isnan(dense))
    return dense[: gaps[0]] if len(gaps) else dense


def read_forecasts(
    provider: CarbonProvider, zones: Iterable[str], at: datetime, hours: int
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each zone's hourly forecast from the hour of ``at``, as far as it is unbroken,
    and where each came from (`Forecast.source`)."""
    series: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for zone in sorted(set(zones)):
        forecast = provider.forecast(zone, at, hours)
        series[zone] = unbroken(forecast.on_hours(at, hours))
        sources[zone] = forecast.source
    return series, sources


def busy_pools(jobs: Iterable[Job], specs: Mapping[str, PoolSpec]) -> dict[str, list[int]]:
    """Places taken in each pool this hour: one per active job, in the pool of its
    deployment (the default pool for a deployment no pool names any more)."""
    pools = dict(specs)
    busy: dict[str, list[int]] = {}
    for job in jobs:
        name, _ = pool_of_deployment(pools, job.deployment)
        busy.setdefault(name, [0])[0] += 1
    return busy


def gather(
    services: Services,
    specs: Mapping[str, PoolSpec],
    provider: CarbonProvider | None,
    at: datetime,
) -> Tick:
    """The tick at ``at``. With no provider (the `immediate` policy) or no pending work,
    the tick has no forecasts and the provider is not asked."""
    groups = pending_groups(services.db, services.registry)
    pools = pools_from_specs(specs)
    series: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    signal = AVERAGE if provider is None else signal_of(provider)
    if provider is not None and groups:
        hours = forecast_hours(groups, at)
        series, sources = read_forecasts(provider, (p.zone for p in pools), at, hours)
    return Tick(
        at,
        groups,
        pools,
        services.registry,
        services.settings.job_max_requests,
        series,
        busy_pools(state.active_jobs(services.db), specs),
        sources,
        signal,
    )


def decide(tick: Tick, policy: str) -> Planned:
    """The launch policy's decision on ``tick``, with its report."""
    decision = POLICIES[policy](tick)
    chart = chart_markdown(decision.plan, tick.pools, tick.forecasts, tick.signal)
    report = plan_markdown(
        decision.plan,
        tick.groups,
        tick.pools,
        tick.forecasts,
        tick.sources,
        signal=tick.signal,
        chart=chart,
    )
    return Planned(decision.launches, report, decision.plan, tick.groups)


def plan_tick(services: Services, provider: CarbonProvider, at: datetime) -> Planned:
    """Gather the tick at ``at`` and decide it with the policy the settings name
    (`OFFPEAK_SCHEDULER_POLICY`); only the `carbon` policy reads the provider."""
    settings = services.settings
    policy = settings.scheduler_policy
    specs = load_pools(settings.pools_path)
    tick = gather(services, specs, provider if policy == "carbon" else None, at)
    return decide(tick, policy)
