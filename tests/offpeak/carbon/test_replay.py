from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from offpeak.carbon.replay import ReplayProvider
from offpeak.carbon.signal import CarbonProvider
from offpeak.carbon.traces import Trace
from offpeak.errors import CarbonUnknownZone, InvalidInput
from tests.offpeak.carbon.helpers import Clock

HOUR = timedelta(hours=1)
YEAR_START = datetime(2022, 1, 1, tzinfo=UTC)
SHIPPED_ZONES = ["BR", "DE", "ES", "GB", "NO", "US-CAL-CISO", "US-TEX-ERCO"]


def ramp(zone: str = "XX", hours: int = 8760) -> Trace:
    """A trace whose value is its hour index: where a value comes from is plain to see."""
    return Trace(zone, YEAR_START, np.arange(hours, dtype=np.float64))


def test_the_shipped_traces_are_the_default_zones() -> None:
    assert ReplayProvider().zones == SHIPPED_ZONES


def test_latest_maps_now_onto_the_trace_by_hour_of_year() -> None:
    clock = Clock(datetime(2025, 3, 6, 19, 40, tzinfo=UTC))
    trace = ramp()
    latest = ReplayProvider([trace], now=clock.now).latest("XX")
    assert latest.at == datetime(2025, 3, 6, 19, tzinfo=UTC)
    assert latest.gco2_per_kwh == trace.index_of(clock.at)


def test_latest_replays_a_shipped_trace() -> None:
    provider = ReplayProvider(now=Clock(datetime(2022, 6, 1, 12, tzinfo=UTC)).now)
    de = provider.traces["DE"]
    assert provider.latest("DE").gco2_per_kwh == de.intensity[de.index_of(provider._now())]


def test_forecast_is_the_trace_future_from_the_start_hour() -> None:
    start = datetime(2022, 2, 1, 5, 30, tzinfo=UTC)
    forecast = ReplayProvider([ramp()]).forecast("XX", start, 24)
    first = 31 * 24 + 5
    assert forecast.source == "replay"
    assert forecast.start == datetime(2022, 2, 1, 5, tzinfo=UTC)
    assert forecast.values().tolist() == list(range(first, first + 24))
    assert [p.at for p in forecast.points][-1] == forecast.start + 23 * HOUR


def test_forecast_wraps_around_the_end_of_the_year() -> None:
    start = datetime(2022, 12, 31, 22, tzinfo=UTC)
    forecast = ReplayProvider([ramp()]).forecast("XX", start, 4)
    assert forecast.values().tolist() == [8758, 8759, 0, 1]
    assert forecast.points[2].at == datetime(2023, 1, 1, tzinfo=UTC)


def test_noisy_forecast_is_deterministic_for_a_seed_and_a_start() -> None:
    start = datetime(2024, 5, 1, 9, tzinfo=UTC)
    one = ReplayProvider(noise=0.05, seed=3).forecast("DE", start, 48)
    again = ReplayProvider(noise=0.05, seed=3).forecast("DE", start + timedelta(minutes=20), 48)
    other_seed = ReplayProvider(noise=0.05, seed=4).forecast("DE", start, 48)
    next_hour = ReplayProvider(noise=0.05, seed=3).forecast("DE", start + HOUR, 48)
    assert one.values().tolist() == again.values().tolist()
    assert one.values().tolist() != other_seed.values().tolist()
    assert one.values()[1:].tolist() != next_hour.values()[:-1].tolist()  # re-issued: fresh noise


def test_noise_is_gaussian_with_a_sigma_of_noise_times_the_trace_mean() -> None:
    provider = ReplayProvider(noise=0.05, seed=11)
    trace = provider.traces["DE"]
    start = datetime(2022, 1, 1, tzinfo=UTC)
    truth = ReplayProvider().forecast("DE", start, trace.hours).values()
    error = provider.forecast("DE", start, trace.hours).values() - truth
    sigma = 0.05 * trace.intensity.mean()
    assert abs(error.mean()) < 4 * sigma / np.sqrt(trace.hours)
    assert error.std() == pytest.approx(sigma, rel=0.05)


def test_noisy_values_are_clipped_at_zero() -> None:
    forecast = ReplayProvider(noise=3.0, seed=1).forecast("NO", YEAR_START, 500)
    assert forecast.values().min() == 0.0


def test_negative_noise_is_refused() -> None:
    with pytest.raises(InvalidInput):
        ReplayProvider(noise=-0.1)


def test_history_is_the_trace_past_up_to_the_current_hour() -> None:
    clock = Clock(datetime(2022, 1, 2, 3, 30, tzinfo=UTC))
    history = ReplayProvider([ramp()], now=clock.now).history(
        "XX", datetime(2022, 1, 2, tzinfo=UTC), datetime(2022, 1, 3, tzinfo=UTC)
    )
    assert [p.gco2_per_kwh for p in history] == [24, 25, 26, 27]
    assert history[-1].at == datetime(2022, 1, 2, 3, tzinfo=UTC)


def test_history_wraps_back_across_the_start_of_the_year() -> None:
    clock = Clock(datetime(2023, 1, 1, 1, tzinfo=UTC))
    history = ReplayProvider([ramp()], now=clock.now).history(
        "XX", datetime(2022, 12, 31, 23, tzinfo=UTC), clock.at
    )
    assert [p.gco2_per_kwh for p in history] == [8759, 0]


def test_an_unknown_zone_names_the_zones_there_are() -> None:
    with pytest.raises(CarbonUnknownZone, match="US-CAL-CISO"):
        ReplayProvider().forecast("FR", YEAR_START, 24)


def test_any_trace_path_can_be_replayed(tmp_path: Path) -> None:
    csv = tmp_path / "fr.csv"
    csv.write_text(
        "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (LCA)\n"
        "2022-01-01 00:00:00,FR,50\n"
        "2022-01-01 01:00:00,FR,60\n"
        "2022-01-01 02:00:00,FR,70\n",
        encoding="utf-8",
    )
    provider = ReplayProvider.from_paths([csv])
    assert provider.zones == ["FR"]
    assert provider.forecast("FR", datetime(2022, 1, 1, 1, tzinfo=UTC), 4).values().tolist() == [
        60,
        70,
        50,
        60,
    ]


def test_replay_is_a_carbon_provider() -> None:
    assert isinstance(ReplayProvider(), CarbonProvider)
