"""Recording a finished job's carbon footprint: intensities from the carbon provider,
arithmetic from offpeak.run.accounting, results into the state database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from offpeak.carbon import CarbonProvider
from offpeak.catalog.pools import PoolSpec, pool_of_deployment
from offpeak.errors import CarbonSignalError
from offpeak.run.accounting import JobCarbon, job_carbon, request_carbon
from offpeak.state import jobs as state
from offpeak.state.db import Database

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)


def _hour(ts: int) -> datetime:
    return datetime.fromtimestamp(ts - ts % 3600, UTC)


def mean_intensity(provider: CarbonProvider, zone: str, start: int, end: int) -> float | None:
    """Mean intensity of ``zone`` over the hours from ``start`` to ``end`` (unix seconds);
    the latest value when history has nothing; None without any signal."""
    try:
        points = provider.history(zone, _hour(start), _hour(end) + HOUR)
        if points:
            return sum(p.gco2_per_kwh for p in points) / len(points)
        return provider.latest(zone).gco2_per_kwh
    except CarbonSignalError as exc:
        log.warning("no carbon signal for %s: %s", zone, exc)
        return None


def record_job_footprint(
    db: Database, provider: CarbonProvider, pools: dict[str, PoolSpec], job_id: str
) -> JobCarbon | None:
    """Account a finished job: its footprint, and each completed request's share and
    baseline. None (and nothing recorded) when the grid signal is unavailable."""
    job = state.get_job(db, job_id)
    name, pool = pool_of_deployment(pools, job.deployment)
    if job.started_at is None or job.wall_seconds is None:
        return None
    ended = job.ended_at or job.started_at
    intensity = mean_intensity(provider, pool.zone, job.started_at, ended)
    if intensity is None:
        return None
    footprint = job_carbon(pool, job.wall_seconds, intensity)
    requests = state.job_requests_for_carbon(db, job_id)
    default_zone = next(iter(pools.values())).zone
    baseline: dict[int, float] = {}
    for _, created, _ in requests:
        hour = created - created % 3600
        if hour not in baseline:
            seen = mean_intensity(provider, default_zone, hour, hour)
            baseline[hour] = intensity if seen is None else seen
    shares = request_carbon(
        footprint,
        {rid: tokens for rid, _, tokens in requests},
        {rid: baseline[created - created % 3600] for rid, created, _ in requests},
    )
    state.record_carbon(
        db,
        job_id,
        pool=name,
        zone=pool.zone,
        energy_kwh=footprint.energy_kwh,
        intensity=footprint.intensity,
        gco2e=footprint.gco2e,
        ran_at=job.started_at,
        requests=[(r.id, r.gco2e, r.baseline_gco2e) for r in shares],
    )
    return footprint
