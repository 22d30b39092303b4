from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from offpeak.carbon.signal import Forecast, IntensityPoint, hour_start, hourly_means, within

HOUR = timedelta(hours=1)
T = datetime(2024, 3, 6, 19, tzinfo=UTC)


def test_hour_start_is_utc_and_takes_naive_times_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert hour_start(datetime(2024, 3, 6, 20, 45, tzinfo=paris)) == T
    assert hour_start(datetime(2024, 3, 6, 19, 59, 59)) == T


def test_hourly_means_average_finer_samples_and_sort_them() -> None:
    samples = [(T + HOUR, 10.0), (T, 100.0), (T + timedelta(minutes=30), 200.0)]
    assert hourly_means(samples) == [IntensityPoint(T, 150.0), IntensityPoint(T + HOUR, 10.0)]


def test_within_keeps_the_hours_from_the_start_hour_up_to_the_end_excluded() -> None:
    points = [IntensityPoint(T + i * HOUR, float(i)) for i in range(5)]
    kept = within(reversed(points), T + timedelta(minutes=40), T + 3 * HOUR)
    assert [p.gco2_per_kwh for p in kept] == [0.0, 1.0, 2.0]


def test_a_forecast_holds_its_points_as_an_immutable_sequence() -> None:
    forecast = Forecast("DE", [IntensityPoint(T, 1.0), IntensityPoint(T + HOUR, 2.0)], "x", T)
    assert forecast.points == (IntensityPoint(T, 1.0), IntensityPoint(T + HOUR, 2.0))
    assert forecast.start == T
    assert forecast.values().dtype.name == "float64"
    assert Forecast("DE", [], "none", T).values().size == 0


def test_on_hours_lays_a_forecast_with_gaps_on_a_dense_array() -> None:
    forecast = Forecast("DE", [IntensityPoint(T, 1.0), IntensityPoint(T + 2 * HOUR, 3.0)], "x", T)
    dense = forecast.on_hours(T - HOUR, 5)
    assert np.isnan(dense[[0, 2, 4]]).all()
    assert dense[[1, 3]].tolist() == [1.0, 3.0]
    assert Forecast("DE", [], "none", T).on_hours(T, 3).shape == (3,)
