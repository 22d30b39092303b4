"""A tick's plan as Markdown, per pool: the forecast, the chosen windows, the expected
saving. The scheduler publishes it as a Prefect artifact; the demo prints it.

It names the kind of signal its figures are in (average intensity or marginal
emissions): a tick reads one provider, so every figure of a report is in that one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from offpeak.carbon.signal import AVERAGE, SIGNAL_NAMES
from offpeak.plan.pending import PendingGroup
from offpeak.plan.planner import Plan, PlannedJob, Pool
from offpeak.plan.policy import Launch

BARS = "▁▂▃▄▅▆▇█"
SHOWN_HOURS = 48


def sparkline(values: np.ndarray) -> str:
    """One bar per hour, scaled between the series' minimum and maximum."""
    if len(values) == 0:
        return ""
    low, high = float(np.min(values)), float(np.max(values))
    scale = (len(BARS) - 1) / (high - low) if high > low else 0.0
    return "".join(BARS[round((v - low) * scale)] for v in values)


def _when(at: datetime, now: datetime) -> str:
    days = (at.date() - now.date()).days
    return at.strftime("%H:%M") + (f" (+{days}d)" if days else "")


def _gco2e(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _saving(jobs: Sequence[PlannedJob]) -> str:
    costed = [j for j in jobs if j.expected_gco2e is not None and j.baseline_gco2e is not None]
    base = sum(j.baseline_gco2e or 0.0 for j in costed)
    if not costed or base <= 0:
        return "no estimate (no signal)"
    expected = sum(j.expected_gco2e or 0.0 for j in costed)
    return (
        f"{100 * (base - expected) / base:.1f}% "
        f"({expected:,.2f} g expected vs {base:,.2f} g run now in the default pool)"
    )


def _why(job: PlannedJob) -> str:
    return f"{job.reason}, 1 of {job.parallel} side by side" if job.parallel > 1 else job.reason


def requests_of(job: PlannedJob, groups: Mapping[str, PendingGroup]) -> int:
    units = groups[job.group].units
    return sum(units[i].count for i in job.units)


def plan_markdown(
    plan: Plan | None,
    groups: Sequence[PendingGroup],
    pools: Sequence[Pool],
    forecasts: Mapping[str, np.ndarray],
    sources: Mapping[str, str],
    title: str = "Carbon-aware plan",
    *,
    signal: str = AVERAGE,
    chart: str = "",
) -> str:
    """Per pool: its forecast, the jobs placed in it (now or later) and their saving,
    all in the one kind of ``signal`` the forecasts are."""
    if plan is None:
        return f"# {title}\n\nThe `immediate` policy runs everything pending at once.\n"
    by_group = {g.engine_model: g for g in groups}
    now = plan.now
    lines = [
        f"# {title}",
        "",
        f"At {now:%Y-%m-%d %H:%M} UTC: {len(plan.launch)} job(s) to launch now, "
        f"{len(plan.later)} planned later, {len(plan.late)} late. "
        f"Expected saving: {_saving(plan.jobs)}.",
        "",
        f"Signal: {SIGNAL_NAMES.get(signal, signal)}, gCO2e/kWh; every figure here is in it.",
    ]
    if chart:
        lines.append(chart)  # `offpeak.plan.chart.chart_markdown`: above the tables
    for pool in pools:
        forecast = np.asarray(forecasts.get(pool.zone, ()), dtype=np.float64)
        shown = forecast[:SHOWN_HOURS]
        lines += ["", f"## Pool `{pool.name}` (zone {pool.zone}, {pool.deployment})", ""]
        if len(shown):
            low, high = int(np.argmin(shown)), int(np.argmax(shown))
            lines.append(
                f"Forecast ({sources.get(pool.zone, '?')}), next {len(shown)} h from "
                f"{now:%H}:00: `{sparkline(shown)}` min {shown[low]:.0f} gCO2e/kWh at "
                f"+{low} h, max {shown[high]:.0f} at +{high} h."
            )
        else:
            lines.append("No carbon signal: jobs here run by their deadline alone.")
        jobs = [j for j in plan.jobs if j.pool == pool.name]
        if not jobs:
            lines += ["", "Nothing planned here."]
            continue
        lines += [
            "",
            "| model | requests | start | end | deadline | expected g | baseline g | why |",
            "|---|---:|---|---|---|---:|---:|---|",
        ]
        lines += [
            f"| {j.group} | {requests_of(j, by_group):,} | "
            f"{'now' if j.start <= now else _when(j.start, now)} | {_when(j.end, now)} | "
            f"{_when(j.deadline, now)} | {_gco2e(j.expected_gco2e)} | "
            f"{_gco2e(j.baseline_gco2e)} | {_why(j)} |"
            for j in sorted(jobs, key=lambda j: j.start)
        ]
        wide = max(j.parallel for j in jobs)
        if wide > 1:
            lines += [
                "",
                f"Elastic: up to {wide} jobs side by side in the clean hours, each with a "
                "range of deadlines, rather than one long job.",
            ]
        lines += ["", f"Expected saving in this pool: {_saving(jobs)}."]
    return "\n".join(lines) + "\n"


def launch_summary(launches: Sequence[Launch]) -> list[dict[str, Any]]:
    """The launches of a tick as plain rows (engine model, models, pool, job size)."""
    return [
        {
            "engine_model": launch.group.engine_model,
            "models": launch.group.models,
            "pool": launch.pool,
            "max_requests": launch.max_requests,
        }
        for launch in launches
    ]
