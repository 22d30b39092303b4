import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.fallback import FallbackProvider
from offpeak.carbon.signal import CarbonProvider, Forecast, IntensityPoint
from offpeak.errors import (
    CarbonNotInPlan,
    CarbonSignalError,
    CarbonUnavailable,
    InvalidInput,
)
from tests.offpeak.carbon.conftest import EM_BASE
from tests.offpeak.carbon.helpers import Clock, em_point

HOUR = timedelta(hours=1)
START = datetime(2024, 3, 6, 19, tzinfo=UTC)


class Scripted:
    """A provider that answers what the test scripts, or raises it."""

    name = "scripted"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.forecasts: list[Forecast | Exception] = []
        self.recent: list[IntensityPoint] | Exception = CarbonUnavailable("no history either")
        self.current: IntensityPoint | Exception = CarbonUnavailable("down")

    def latest(self, zone: str) -> IntensityPoint:
        if isinstance(self.current, Exception):
            raise self.current
        return self.current

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        answer = self.forecasts.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        if isinstance(self.recent, Exception):
            raise self.recent
        return [p for p in self.recent if start <= p.at < end]


def hourly(start: datetime, values: list[float]) -> list[IntensityPoint]:
    return [IntensityPoint(start + i * HOUR, v) for i, v in enumerate(values)]


def fresh(clock: Clock, values: list[float]) -> Forecast:
    return Forecast("DE", hourly(clock.at, values), "scripted", clock.at)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def inner(clock: Clock) -> Scripted:
    return Scripted(clock)


@pytest.fixture
def chain(inner: Scripted, clock: Clock) -> FallbackProvider:
    return FallbackProvider(inner, max_age=timedelta(hours=12), now=clock.now)


def test_a_fresh_forecast_passes_through(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [fresh(clock, [1, 2, 3])]
    forecast = chain.forecast("DE", clock.at, 3)
    assert forecast.source == "scripted"
    assert forecast.values().tolist() == [1, 2, 3]


def test_on_failure_the_last_good_forecast_is_shifted_to_start_now(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [fresh(clock, [float(v) for v in range(24)]), CarbonUnavailable("500")]
    fetched = clock.at
    chain.forecast("DE", clock.at, 24)
    clock.advance(hours=3, minutes=10)
    forecast = chain.forecast("DE", clock.at, 24)
    assert forecast.source == "last-good"
    assert forecast.fetched_at == fetched
    assert forecast.start == START + 3 * HOUR  # the hours gone by are dropped
    assert forecast.values().tolist() == [float(v) for v in range(3, 24)]


def test_a_stale_last_good_forecast_gives_way_to_history(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [fresh(clock, [100.0] * 48), CarbonUnavailable("down")]
    chain.forecast("DE", clock.at, 48)
    clock.advance(hours=13)
    now = START + 13 * HOUR
    inner.recent = hourly(now - 24 * HOUR, [float(h) for h in range(25)])  # 0 .. 24 up to now
    forecast = chain.forecast("DE", clock.at, 30)
    assert forecast.source == "history"
    assert forecast.start == now
    assert forecast.fetched_at == clock.at
    # every hour takes the latest measured hour with the same hour of day
    assert forecast.values().tolist() == [24.0] + [float(h) for h in range(1, 24)] + [
        24.0,
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
    ]


def test_hours_missing_from_history_take_its_mean(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [CarbonNotInPlan("forecasts need a paid plan")]
    inner.recent = [IntensityPoint(START - 2 * HOUR, 100.0), IntensityPoint(START - HOUR, 200.0)]
    forecast = chain.forecast("DE", clock.at, 3)
    assert forecast.source == "history"
    assert forecast.values().tolist() == [150.0, 150.0, 150.0]


def test_with_no_history_either_there_is_no_signal(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [CarbonUnavailable("down")]
    forecast = chain.forecast("DE", clock.at, 24)
    assert forecast.source == "none"
    assert forecast.points == ()
    assert forecast.start is None


def test_an_empty_forecast_counts_as_a_failure(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [Forecast("DE", [], "scripted", clock.at)]
    inner.recent = hourly(START - 3 * HOUR, [7.0, 7.0, 7.0])
    assert chain.forecast("DE", clock.at, 2).source == "history"


def test_the_chain_degrades_in_order_last_good_then_history_then_none(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [fresh(clock, [50.0] * 24)] + [CarbonUnavailable("down")] * 4
    sources = [chain.forecast("DE", clock.at, 24).source]
    clock.advance(hours=1)
    inner.recent = hourly(clock.at - 24 * HOUR, [60.0] * 25)
    sources.append(chain.forecast("DE", clock.at, 24).source)  # last good, though history works
    clock.advance(hours=12)
    sources.append(chain.forecast("DE", clock.at, 24).source)  # last good is too old
    inner.recent = CarbonUnavailable("history down too")
    sources.append(chain.forecast("DE", clock.at, 24).source)
    assert sources == ["scripted", "last-good", "history", "none"]


def test_last_good_is_kept_per_zone(chain: FallbackProvider, inner: Scripted, clock: Clock) -> None:
    inner.forecasts = [fresh(clock, [50.0] * 24), CarbonUnavailable("down")]
    chain.forecast("DE", clock.at, 24)
    assert chain.forecast("FR", clock.at, 24).source == "none"


def test_what_it_fell_back_to_is_logged(
    chain: FallbackProvider, inner: Scripted, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    inner.forecasts = [CarbonUnavailable("Electricity Maps answered 503")]
    with caplog.at_level(logging.WARNING, logger="offpeak.carbon.fallback"):
        chain.forecast("DE", clock.at, 24)
    assert "answered 503" in caplog.text
    assert "no signal" in caplog.text


def test_errors_that_are_not_provider_failures_propagate(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [InvalidInput("a forecast cannot cover -1 hours")]
    with pytest.raises(InvalidInput):
        chain.forecast("DE", clock.at, -1)


def test_latest_falls_back_to_the_last_good_forecast_of_this_hour(
    chain: FallbackProvider, inner: Scripted, clock: Clock
) -> None:
    inner.forecasts = [fresh(clock, [10.0, 20.0, 30.0])]
    chain.forecast("DE", clock.at, 3)
    clock.advance(hours=1, minutes=5)
    assert chain.latest("DE") == IntensityPoint(START + HOUR, 20.0)
    clock.advance(hours=5)
    with pytest.raises(CarbonSignalError):
        chain.latest("DE")


def test_the_chain_is_a_carbon_provider(chain: FallbackProvider) -> None:
    assert isinstance(chain, CarbonProvider)
    assert chain.name == "scripted"


def test_free_tier_electricity_maps_forecasts_from_its_history(clock: Clock) -> None:
    """Free plans have latest and history but no forecast: the chain still plans."""
    with respx.mock(base_url=EM_BASE) as api:
        api.get("/carbon-intensity/forecast").respond(401, json={"error": "Endpoint not available"})
        day = [em_point(START - 24 * HOUR + i * HOUR, 300.0 + i) for i in range(25)]
        api.get("/carbon-intensity/history").mock(
            return_value=httpx.Response(200, json={"zone": "DE", "history": day})
        )
        provider = ElectricityMaps("t", base_url=EM_BASE, sleep=lambda _: None, now=clock.now)
        with FallbackProvider(provider, now=clock.now) as chain:
            forecast = chain.forecast("DE", clock.at, 3)
    assert forecast.source == "history"
    assert forecast.values().tolist() == [324.0, 301.0, 302.0]
