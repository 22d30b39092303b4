"""The carbon signal every provider speaks: hourly intensity points, forecasts, and
the provider interface the scheduler reads through.

Times are UTC. A point's ``at`` is the start of its hour; a naive datetime given to
any function here is taken to be UTC already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np

HOUR = timedelta(hours=1)

# Forecast.source when the provider did not answer (see offpeak.carbon.fallback).
LAST_GOOD = "last-good"
FROM_HISTORY = "history"
NO_SIGNAL = "none"

# What a provider's gCO2e/kWh mean: the average intensity of the grid's mix (Electricity
# Maps, UK Carbon Intensity, the replayed traces), or the marginal emissions of the
# plants that answer one more kWh (WattTime's MOER). The two are different quantities:
# a figure is computed from one of them, never from both.
AVERAGE = "average"
MARGINAL = "marginal"
SIGNAL_NAMES = {AVERAGE: "average intensity", MARGINAL: "marginal emissions (MOER)"}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime (a naive one is taken to be UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def hour_start(at: datetime) -> datetime:
    """The start of the UTC hour ``at`` falls in."""
    return as_utc(at).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, order=True)
class IntensityPoint:
    """The grid's carbon intensity over one hour."""

    at: datetime  # UTC start of the hour
    gco2_per_kwh: float  # life-cycle gCO2eq per kWh consumed


@dataclass(frozen=True)
class Forecast:
    """Hourly intensities from ``points[0].at`` on, oldest first; an hour the provider
    has no value for is left out rather than guessed.

    ``source`` says where they come from: the provider's name for a fresh forecast,
    ``"last-good"`` or ``"history"`` when the fallback chain stood in for it, and
    ``"none"`` (no points) when there is no signal at all: then work runs by its
    deadline alone. A forecast may cover fewer hours than were asked for.
    """

    zone: str
    points: Sequence[IntensityPoint]
    source: str
    fetched_at: datetime  # when the provider produced or served these points

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))

    @property
    def start(self) -> datetime | None:
        """The first hour covered, or None for an empty forecast."""
        return self.points[0].at if self.points else None

    def values(self) -> np.ndarray:
        """The intensities as a float64 array, one per point."""
        return np.array([p.gco2_per_kwh for p in self.points], dtype=np.float64)

    def on_hours(self, start: datetime, hours: int) -> np.ndarray:
        """The intensities of the ``hours`` hours from the hour of ``start``, on a dense
        float64 array: NaN for an hour this forecast has no point for."""
        first, dense = hour_start(start), np.full(max(hours, 0), np.nan)
        for point in self.points:
            i = int((point.at - first) / HOUR)
            if 0 <= i < len(dense):
                dense[i] = point.gco2_per_kwh
        return dense


@runtime_checkable
class CarbonProvider(Protocol):
    """A source of grid carbon intensity for named zones.

    Each method raises a :class:`~offpeak.errors.CarbonSignalError` subclass when the
    provider cannot answer: :class:`~offpeak.errors.CarbonNotInPlan` where it does not
    offer the data, :class:`~offpeak.errors.CarbonUnknownZone` for a zone it does not
    know, :class:`~offpeak.errors.CarbonUnavailable` when it is down.
    """

    @property
    def name(self) -> str:
        """Short name, used as ``Forecast.source``."""
        ...

    def latest(self, zone: str) -> IntensityPoint:
        """The intensity of the current (or most recent measured) hour."""
        ...

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        """Hourly intensities for the ``hours`` hours from the hour of ``start``."""
        ...

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Measured hourly intensities from the hour of ``start`` up to ``end`` (excluded)."""
        ...


def signal_of(provider: object) -> str:
    """The kind of signal a provider serves: its ``signal`` attribute, else average."""
    signal = getattr(provider, "signal", AVERAGE)
    return signal if signal in SIGNAL_NAMES else AVERAGE


def hourly_means(samples: Iterable[tuple[datetime, float]]) -> list[IntensityPoint]:
    """Average finer-grained samples (half-hours, 15 minutes) into hourly points."""
    by_hour: defaultdict[datetime, list[float]] = defaultdict(list)
    for at, value in samples:
        by_hour[hour_start(at)].append(value)
    return [IntensityPoint(at, sum(vs) / len(vs)) for at, vs in sorted(by_hour.items())]


def within(
    points: Iterable[IntensityPoint], start: datetime, end: datetime
) -> list[IntensityPoint]:
    """The points whose hour starts in ``[hour_start(start), end)``, sorted."""
    first, end = hour_start(start), as_utc(end)
    return sorted(p for p in points if first <= p.at < end)
