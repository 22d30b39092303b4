"""The plan as a picture: per pool, its forecast and its jobs as bars, in the report."""

from __future__ import annotations

import base64
import re
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from matplotlib.patches import Rectangle, StepPatch

from offpeak.plan.chart import chart_markdown, draw, png
from offpeak.plan.planner import Plan, PlannerParams, Pool, Work, WorkGroup, plan

NOW = datetime(2022, 3, 1, 9, 20, tzinfo=UTC)
POOLS = [Pool("eu", "infer-eu", "DE", max_concurrent_jobs=3), Pool("uk", "infer-uk", "GB")]
FORECASTS = {"DE": np.linspace(300.0, 100.0, 30), "GB": np.full(30, 400.0)}


def three_jobs() -> Plan:
    due = NOW.timestamp() + 20 * 3600
    groups = [WorkGroup(f"m{i}", [Work(due, 3600.0 * (i + 1))]) for i in range(3)]
    return plan(NOW, groups, POOLS, FORECASTS, params=PlannerParams(safety_margin_s=0.0))


def test_each_pool_shows_its_forecast_and_its_jobs_as_bars() -> None:
    planned = three_jobs()
    fig = draw(planned, POOLS, FORECASTS, "marginal")
    eu, uk = fig.axes
    steps = [p for p in eu.patches if isinstance(p, StepPatch)]
    assert len(steps) == 1 and steps[0].get_data().values.tolist() == FORECASTS["DE"].tolist()
    bars = [p for p in eu.patches if isinstance(p, Rectangle)]
    assert len(bars) == len([j for j in planned.jobs if j.pool == "eu"]) == 3
    # Each bar as high as the mean intensity its job is expected to run at.
    expected = sorted(j.expected_gco2e / j.kwh for j in planned.jobs if j.expected_gco2e)
    assert sorted(b.get_height() for b in bars) == pytest.approx(expected)
    assert not [p for p in uk.patches if isinstance(p, Rectangle)]
    assert "marginal emissions" in fig.get_suptitle()
    assert png(fig).startswith(b"\x89PNG")


def test_the_report_carries_the_chart_as_an_image_when_jobs_are_planned() -> None:
    text = chart_markdown(three_jobs(), POOLS, FORECASTS)
    found = re.search(r"!\[[^\]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert found is not None and base64.b64decode(found[1]).startswith(b"\x89PNG")
    assert chart_markdown(Plan(NOW, [], [], []), POOLS, FORECASTS) == ""
    assert chart_markdown(None, POOLS, FORECASTS) == ""


def test_without_matplotlib_the_report_has_no_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    assert chart_markdown(three_jobs(), POOLS, FORECASTS) == ""
