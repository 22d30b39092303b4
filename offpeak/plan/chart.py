"""A tick's plan as a picture: per pool, its forecast and the planned jobs as bars.

The scheduler's artifact shows it above the tables of `offpeak.plan.report`, as a PNG
inside the Markdown (a data URL: the artifact holds it whole, nothing to fetch or
expire). It needs matplotlib (the ``plot`` extra); without it the artifact simply has
no chart.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np

from offpeak.carbon.signal import AVERAGE, SIGNAL_NAMES
from offpeak.plan.planner import Plan, Pool
from offpeak.plan.report import SHOWN_HOURS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN, POOL_HEIGHT_IN, DPI = 8.0, 2.2, 80  # ~30 KB of PNG for a pool or two


def draw(
    plan: Plan,
    pools: Sequence[Pool],
    forecasts: Mapping[str, np.ndarray],
    signal: str = AVERAGE,
) -> Figure:
    """One panel per pool: the forecast as steps from the current hour, each job of the
    plan a bar over its run, as high as the mean intensity it is expected to run at
    (its baseline's where the forecast does not cover it)."""
    from matplotlib.figure import Figure  # the plot extra: imported only when drawing

    hour0 = plan.now.replace(minute=0, second=0, microsecond=0)
    fig = Figure(figsize=(WIDTH_IN, POOL_HEIGHT_IN * len(pools)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(pools), 1, sharex=True, squeeze=False)[:, 0]
    for ax, pool in zip(axes, pools, strict=True):
        series = np.asarray(forecasts.get(pool.zone, ()), dtype=np.float64)[:SHOWN_HOURS]
        hours = [hour0 + timedelta(hours=h) for h in range(len(series) + 1)]
        if len(series):
            ax.stairs(series, hours, color="tab:green", label="forecast")
        side: dict[tuple[str, object], int] = {}  # jobs side by side: one label, "x k"
        for job in (j for j in plan.jobs if j.pool == pool.name):
            gco2e = job.expected_gco2e if job.expected_gco2e is not None else job.baseline_gco2e
            height = gco2e / job.kwh if gco2e is not None and job.kwh > 0 else 0.0
            color = "tab:red" if job.reason == "late" else "tab:blue"
            middle = job.start + (job.end - job.start) / 2
            seen = side.get((job.group, job.start), 0)
            side[(job.group, job.start)] = seen + 1
            if not seen:
                label = job.group + (f" x{job.parallel}" if job.parallel > 1 else "")
                ax.annotate(label, (middle, height), ha="center", va="bottom", fontsize=6)
            ax.bar(
                job.start, height, width=job.end - job.start, align="edge", color=color, alpha=0.5
            )
        ax.axvline(plan.now, color="grey", linewidth=0.8)
        ax.set_title(f"{pool.name} ({pool.zone})", fontsize=9, loc="left")
        ax.set_ylabel("g/kWh", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Forecast ({SIGNAL_NAMES.get(signal, signal)}) and planned jobs", fontsize=9)
    return fig


def png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def chart_markdown(
    plan: Plan | None,
    pools: Sequence[Pool],
    forecasts: Mapping[str, np.ndarray],
    signal: str = AVERAGE,
) -> str:
    """The chart as a Markdown image, or "" when there is nothing planned or no
    matplotlib to draw it with."""
    if plan is None or not plan.jobs or not pools:
        return ""
    try:
        image = png(draw(plan, pools, forecasts, signal))
    except ImportError:
        return ""
    data = base64.b64encode(image).decode()
    return f"\n![Each pool's forecast and the planned jobs](data:image/png;base64,{data})\n"
