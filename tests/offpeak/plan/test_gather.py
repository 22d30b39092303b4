"""The scheduler's tick: the forecast horizon, gaps, busy pools, and what launches now.

The pure helpers on hand-made values; the tick itself on a real state database, with
an in-memory carbon provider serving a known forecast."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from offpeak.carbon import CarbonProvider, Forecast, IntensityPoint
from offpeak.carbon.signal import HOUR, hour_start
from offpeak.catalog.models import ModelRegistry
from offpeak.catalog.pools import PoolSpec, load_pools
from offpeak.config import PACKAGED_MODELS, Settings, load_settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.gather import (
    MAX_FORECAST_HOURS,
    busy_pools,
    decide,
    forecast_hours,
    gather,
    plan_tick,
    read_forecasts,
    unbroken,
)
from offpeak.plan.pending import PendingGroup, PendingUnit
from offpeak.run.launch import open_job
from offpeak.schemas import JobStatus
from offpeak.services import Services
from offpeak.state.db import Database
from offpeak.state.models import Job
from offpeak.storage import LocalStore
from tests.utils.factories import add_requests, new_key

T0 = 1_700_000_000 - 1_700_000_000 % 3600 + 5  # a few seconds into an hour
AT = datetime.fromtimestamp(T0, UTC)
LOCAL = PoolSpec(
    deployment="inference/local", zone="GB", gpus=1, watts_per_gpu=65, max_concurrent_jobs=2
)
EU = PoolSpec(
    deployment="inference/eu", zone="DE", gpus=1, watts_per_gpu=700, max_concurrent_jobs=1
)


class TableProvider:
    """A carbon provider serving fixed hourly values from ``start``; None is an hour it
    has no value for. Records what it was asked."""

    name = "table"

    def __init__(self, series: dict[str, Sequence[float | None]], start: datetime = AT) -> None:
        self.series = series
        self.start = hour_start(start)
        self.asked: list[tuple[str, int]] = []

    def _points(self, zone: str, first: datetime, hours: int) -> list[IntensityPoint]:
        offset = int((first - self.start) / HOUR)
        values = self.series[zone][max(offset, 0) : max(offset + hours, 0)]
        return [IntensityPoint(first + i * HOUR, v) for i, v in enumerate(values) if v is not None]

    def latest(self, zone: str) -> IntensityPoint:
        return self._points(zone, self.start, 1)[0]

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        self.asked.append((zone, hours))
        return Forecast(zone, self._points(zone, hour_start(start), hours), self.name, self.start)

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        return []


def group(*deadlines_h: float) -> PendingGroup:
    units = tuple(PendingUnit(T0 + int(h * 3600), T0 + int(h * 3600), 1, 100) for h in deadlines_h)
    return PendingGroup("tiny-chat", ("tiny-chat",), units)


def test_the_table_provider_speaks_the_provider_interface() -> None:
    assert isinstance(TableProvider({}), CarbonProvider)


# --- the forecast horizon ------------------------------------------------------------------


def test_no_pending_work_needs_only_the_current_hour() -> None:
    assert forecast_hours([], AT) == 1


def test_the_horizon_reaches_the_hour_of_the_latest_deadline() -> None:
    # Due 10.5 h from a time 5 s into an hour: the current hour and the next 11.
    assert forecast_hours([group(2, 10.5), group(3)], AT) == 12
    assert forecast_hours([group(24)], AT) == 25


def test_the_horizon_is_one_hour_at_least_and_73_at_most() -> None:
    assert forecast_hours([group(-5)], AT) == 1
    assert forecast_hours([group(500)], AT) == MAX_FORECAST_HOURS == 73


# --- gaps ----------------------------------------------------------------------------------


def test_a_forecast_is_cut_at_its_first_gap() -> None:
    cut = unbroken(np.array([100.0, 200.0, math.nan, 50.0]))
    assert cut.tolist() == [100.0, 200.0]
    assert unbroken(np.array([math.nan, 1.0])).tolist() == []
    assert unbroken(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]


def test_forecasts_of_each_zone_once_up_to_their_first_gap() -> None:
    provider = TableProvider({"GB": [300.0, 200.0, None, 50.0, 50.0], "DE": [400.0] * 10})
    series, sources = read_forecasts(provider, ["GB", "DE", "GB"], AT + timedelta(minutes=30), 5)
    assert provider.asked == [("DE", 5), ("GB", 5)]
    assert series["GB"].tolist() == [300.0, 200.0]  # not across the missing hour
    assert series["DE"].tolist() == [400.0] * 5
    assert sources == {"DE": "table", "GB": "table"}


def test_a_forecast_missing_the_current_hour_is_no_signal() -> None:
    provider = TableProvider({"GB": [None, 50.0, 50.0]})
    series, _ = read_forecasts(provider, ["GB"], AT, 3)
    assert series["GB"].tolist() == []


# --- busy pools ----------------------------------------------------------------------------


def job(deployment: str) -> Job:
    return Job(id=deployment, deployment=deployment, status=JobStatus.RUNNING)


def test_each_active_job_takes_a_place_in_the_pool_of_its_deployment() -> None:
    specs = {"local": LOCAL, "eu": EU}
    jobs = [job("inference/eu"), job("inference/local"), job("inference/eu")]
    assert busy_pools(jobs, specs) == {"eu": [2], "local": [1]}


def test_a_job_on_a_deployment_no_pool_names_counts_in_the_default_pool() -> None:
    assert busy_pools([job("inference/gone")], {"local": LOCAL, "eu": EU}) == {"local": [1]}
    assert busy_pools([], {"local": LOCAL}) == {}


# --- the tick on a real database -----------------------------------------------------------


@pytest.fixture
def slow_registry(tmp_path: Path) -> ModelRegistry:
    """The packaged models with a throughput so low that one request is ~35 GPU-minutes:
    big enough a job for the planner to move it, not just aggregate it."""
    text = PACKAGED_MODELS.read_text().replace(
        "throughput_tokens_per_s: 2000", "throughput_tokens_per_s: 0.125"
    )
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return ModelRegistry.load(path)


@pytest.fixture
def services(db: Database, tmp_path: Path, slow_registry: ModelRegistry) -> Services:
    settings = load_settings(data_dir=tmp_path / "data", scheduler_policy="carbon")
    return Services(settings, db, LocalStore(tmp_path / "objects"), slow_registry)


def submit(services: Services, window: str, count: int = 1) -> list[str]:
    """Sealed requests created at T0 with ``window`` to run in."""
    key = new_key(services.db)[0]
    ids = add_requests(services.db, key.id, count, at=T0, completion_window=window)
    seal_all(services.db, services.store, 1000)
    return ids


def test_a_tick_without_a_provider_has_no_forecast(services: Services) -> None:
    submit(services, "24h", 2)
    tick = gather(services, {"local": LOCAL}, None, AT)
    assert [(g.engine_model, g.count) for g in tick.groups] == [("tiny-chat", 2)]
    assert tick.forecasts == {} and tick.sources == {} and tick.busy == {}
    assert tick.job_max_requests == services.settings.job_max_requests


def test_a_tick_asks_each_zone_up_to_the_latest_deadline(services: Services) -> None:
    submit(services, "1h")
    submit(services, "24h")
    provider = TableProvider({"GB": [100.0] * 80, "DE": [200.0] * 80})
    tick = gather(services, {"local": LOCAL, "eu": EU}, provider, AT)
    assert sorted(provider.asked) == [("DE", 25), ("GB", 25)]
    assert len(tick.forecasts["GB"]) == 25 and tick.sources == {"DE": "table", "GB": "table"}


def test_a_tick_with_nothing_pending_asks_no_forecast(services: Services) -> None:
    provider = TableProvider({"GB": [100.0] * 80})
    tick = gather(services, {"local": LOCAL}, provider, AT)
    assert tick.groups == [] and provider.asked == [] and tick.forecasts == {}


def test_a_tick_counts_the_jobs_already_holding_a_pool(services: Services) -> None:
    submit(services, "24h")
    tick = gather(services, {"local": LOCAL}, None, AT)
    opened = open_job(
        services.db,
        services.store,
        tick.groups[0],
        max_requests=10,
        deployment="inference/local",
        at=T0,
    )
    assert opened is not None
    assert gather(services, {"local": LOCAL}, None, AT).busy == {"local": [1]}


def test_what_is_due_launches_now_and_the_rest_waits_for_the_clean_hour(
    services: Services,
) -> None:
    due_soon = submit(services, "1h")
    submit(services, "72h")
    provider = TableProvider({"GB": [300.0] * 5 + [50.0] * 80})
    planned = decide(gather(services, {"local": LOCAL}, provider, AT), "carbon")
    # The 1-hour request cannot wait for the clean hours; the 72-hour one can.
    (launch,) = planned.launches
    assert (launch.max_requests, launch.pool, launch.deployment) == (1, "local", "inference/local")
    assert launch.expires_between == (T0 + 3600, T0 + 3600)
    assert len(due_soon) == 1
    assert "| tiny-chat | 1 | now |" in planned.report
    assert "min 50 gCO2e/kWh at +5 h" in planned.report and "Forecast (table)" in planned.report


def test_everything_launches_now_when_now_is_the_cleanest_hour(services: Services) -> None:
    submit(services, "1h")
    submit(services, "72h")
    provider = TableProvider({"GB": [50.0] + [300.0] * 80})
    planned = decide(gather(services, {"local": LOCAL}, provider, AT), "carbon")
    assert sorted(launch.expires_between or (0, 0) for launch in planned.launches) == [
        (T0 + 3600, T0 + 3600),
        (T0 + 72 * 3600, T0 + 72 * 3600),
    ]


def test_a_full_pool_defers_what_would_launch_now(services: Services) -> None:
    submit(services, "72h")
    one_place = {"local": LOCAL.model_copy(update={"max_concurrent_jobs": 1})}
    provider = TableProvider({"GB": [50.0] + [300.0] * 80})
    assert len(decide(gather(services, one_place, provider, AT), "carbon").launches) == 1
    # A job already running holds the only place this hour: the work waits for the next.
    held = gather(services, one_place, None, AT).groups[0]
    assert open_job(
        services.db, services.store, held, max_requests=10, deployment="inference/local", at=T0
    )
    submit(services, "72h")
    tick = gather(services, one_place, provider, AT)
    assert tick.busy == {"local": [1]}
    planned = decide(tick, "carbon")
    assert planned.launches == []
    assert "| tiny-chat | 1 | now |" not in planned.report


def test_plan_tick_follows_the_policy_the_settings_name(services: Services, tmp_path: Path) -> None:
    submit(services, "72h")
    provider = TableProvider({"GB": [300.0] * 5 + [50.0] * 80})
    carbon = plan_tick(services, provider, AT)
    assert carbon.launches == [] and provider.asked == [("GB", 73)]
    settings: Settings = services.settings.model_copy(update={"scheduler_policy": "immediate"})
    immediate = Services(settings, services.db, services.store, services.registry)
    (launch,) = plan_tick(immediate, provider, AT).launches
    assert launch.pool == next(iter(load_pools(settings.pools_path)))
    assert provider.asked == [("GB", 73)]  # the immediate policy reads no forecast


class MarginalTable(TableProvider):
    """The table, as marginal emissions (WattTime's kind of signal)."""

    signal = "marginal"


def test_the_report_names_the_kind_of_signal_its_figures_are_in(services: Services) -> None:
    submit(services, "72h")
    average = decide(
        gather(services, {"local": LOCAL}, TableProvider({"GB": [50.0] * 80}), AT), "carbon"
    )
    assert "Signal: average intensity" in average.report
    tick = gather(services, {"local": LOCAL}, MarginalTable({"GB": [50.0] * 80}), AT)
    assert tick.signal == "marginal"
    report = decide(tick, "carbon").report
    assert "Signal: marginal emissions (MOER)" in report and "average" not in report
    assert "](data:image/png;base64," in report  # the plan as a chart, above the tables
