"""Documented provider payloads (CARBON.md) and a controllable clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2024, 3, 6, 19, 17, tzinfo=UTC)  # mid-hour: providers work in whole hours


class Clock:
    """Wall clock and monotonic clock that move only when told to."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at
        self.seconds = 1000.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, **delta: float) -> None:
        step = timedelta(**delta)
        self.at += step
        self.seconds += step.total_seconds()


def em_stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def em_point(at: datetime, value: float | None, zone: str = "DE") -> dict[str, Any]:
    """One Electricity Maps carbon-intensity point, as latest / past / history send it."""
    return {
        "zone": zone,
        "carbonIntensity": value,
        "datetime": em_stamp(at),
        "updatedAt": "2024-03-06T18:45:44.917Z",
        "createdAt": "2024-03-03T19:42:35.805Z",
        "emissionFactorType": "lifecycle",
        "isEstimated": False,
        "estimationMethod": None,
    }


def em_forecast(
    start: datetime, values: Sequence[float | None], zone: str = "DE"
) -> dict[str, Any]:
    return {
        "zone": zone,
        "updatedAt": "2024-03-06T18:30:00.000Z",
        "forecast": [
            {"carbonIntensity": v, "datetime": em_stamp(start + timedelta(hours=i))}
            for i, v in enumerate(values)
        ],
    }


def uk_stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%MZ")


def uk_periods(
    start: datetime, forecasts: Sequence[float], actuals: Sequence[float | None] | None = None
) -> list[dict[str, Any]]:
    """Half-hour periods as UK Carbon Intensity sends them."""
    periods = []
    for i, forecast in enumerate(forecasts):
        begin = start + timedelta(minutes=30 * i)
        intensity: dict[str, Any] = {"forecast": forecast, "index": "moderate"}
        if actuals is not None:
            intensity["actual"] = actuals[i]
        periods.append(
            {
                "from": uk_stamp(begin),
                "to": uk_stamp(begin + timedelta(minutes=30)),
                "intensity": intensity,
            }
        )
    return periods


def uk_region(region: int, periods: list[dict[str, Any]]) -> dict[str, Any]:
    for period in periods:
        period["generationmix"] = [{"fuel": "wind", "perc": 41.5}, {"fuel": "gas", "perc": 20.1}]
    return {"regionid": region, "dnoregion": "UKPN London", "shortname": "London", "data": periods}
