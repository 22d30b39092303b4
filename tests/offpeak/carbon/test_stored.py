"""Forecasts kept in the object store: read back by a new chain (a new flow run) as the
cache and as the last good forecast, on a real local folder and a real S3 server."""

from __future__ import annotations

from datetime import timedelta

from offpeak.carbon.fallback import FallbackProvider
from offpeak.carbon.signal import LAST_GOOD, Forecast
from offpeak.carbon.stored import ForecastStore
from offpeak.errors import CarbonUnavailable
from offpeak.storage import ObjectStore
from tests.offpeak.carbon.helpers import Clock
from tests.offpeak.carbon.test_fallback import Scripted, hourly


def fresh(clock: Clock, values: list[float]) -> Forecast:
    """A forecast fetched now, from the current hour."""
    return Forecast("DE", hourly(clock.at.replace(minute=0), values), "scripted", clock.at)


def chain(store: ObjectStore, clock: Clock, cache_minutes: float = 5.0) -> FallbackProvider:
    """A chain as one flow run opens it: nothing in memory, the store behind it."""
    provider = Scripted(clock)
    return FallbackProvider(
        provider,
        max_age=timedelta(hours=12),
        memory=ForecastStore(store, provider.name),
        cache_for=timedelta(minutes=cache_minutes),
        now=clock.now,
    )


def test_a_forecast_is_kept_as_one_json_object_per_provider_and_zone(
    store: ObjectStore, clock: Clock
) -> None:
    memory = ForecastStore(store, "electricitymaps")
    at = clock.at.replace(minute=0)
    forecast = Forecast("52.5,13.4/x", hourly(at, [100.0, 90.0]), "electricitymaps", clock.at)
    memory.save(forecast, clock.at, 3)
    assert list(store.list("carbon/")) == ["carbon/electricitymaps/52.5%2C13.4%2Fx.json"]
    stored = memory.load("52.5,13.4/x")
    assert stored is not None and stored.forecast == forecast
    assert stored.covers(clock.at + timedelta(minutes=30), 3)
    assert not stored.covers(clock.at + timedelta(hours=1), 3)  # asked past its window
    assert memory.load("DE") is None


def test_an_unreadable_stored_forecast_is_no_forecast(store: ObjectStore) -> None:
    store.put("carbon/scripted/DE.json", b'{"zone": "DE", "points": "garbage"}')
    assert ForecastStore(store, "scripted").load("DE") is None


def test_the_next_run_uses_the_stored_forecast_without_asking_while_fresh(
    store: ObjectStore, clock: Clock
) -> None:
    first = chain(store, clock)
    assert isinstance(first.provider, Scripted)
    first.provider.forecasts = [fresh(clock, [300.0, 200.0, 100.0])]
    assert first.forecast("DE", clock.at, 3).values().tolist() == [300.0, 200.0, 100.0]

    clock.advance(minutes=4)
    second = chain(store, clock)
    assert isinstance(second.provider, Scripted)  # scripted to answer nothing: not asked
    cached = second.forecast("DE", clock.at, 2)
    assert cached.source == "scripted" and cached.values().tolist() == [300.0, 200.0]
    assert cached.fetched_at == clock.at - timedelta(minutes=4)

    # More hours than were fetched, or an older copy: the provider is asked again.
    third = chain(store, clock)
    assert isinstance(third.provider, Scripted)
    third.provider.forecasts = [fresh(clock, [1.0] * 5)]
    assert third.forecast("DE", clock.at, 5).values().tolist() == [1.0] * 5
    clock.advance(minutes=6)
    fourth = chain(store, clock)
    assert isinstance(fourth.provider, Scripted)
    fourth.provider.forecasts = [fresh(clock, [2.0] * 2)]
    assert fourth.forecast("DE", clock.at, 2).values().tolist() == [2.0, 2.0]


def test_the_next_run_falls_back_on_the_stored_last_good_forecast(
    store: ObjectStore, clock: Clock
) -> None:
    first = chain(store, clock, cache_minutes=0)
    assert isinstance(first.provider, Scripted)
    first.provider.forecasts = [fresh(clock, [300.0, 200.0, 100.0])]
    first.forecast("DE", clock.at, 3)

    clock.advance(hours=1)
    second = chain(store, clock, cache_minutes=0)
    assert isinstance(second.provider, Scripted)
    second.provider.forecasts = [CarbonUnavailable("down")]
    stand_in = second.forecast("DE", clock.at, 3)
    assert stand_in.source == LAST_GOOD and stand_in.values().tolist() == [200.0, 100.0]
    assert second.latest("DE").gco2_per_kwh == 200.0  # the provider is down for that too


def test_a_stored_forecast_older_than_the_limit_is_not_used(
    store: ObjectStore, clock: Clock
) -> None:
    first = chain(store, clock, cache_minutes=0)
    assert isinstance(first.provider, Scripted)
    first.provider.forecasts = [fresh(clock, [300.0] * 24)]
    first.forecast("DE", clock.at, 24)
    clock.advance(hours=13)
    second = chain(store, clock, cache_minutes=0)
    assert isinstance(second.provider, Scripted)
    second.provider.forecasts = [CarbonUnavailable("down")]
    assert second.forecast("DE", clock.at, 3).source == "none"
