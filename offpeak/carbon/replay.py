"""Replay of real hourly traces: the embedded default carbon signal.

The wall clock maps onto each trace by hour of year (:meth:`Trace.index_of`), so a
fresh clone sees realistic daily and seasonal patterns with no network and no key.
Forecasts are the trace's own future, wrapping around the end of the year, with
optional Gaussian noise to play an imperfect forecast (the "Let's Wait Awhile"
model: ``noise=0.05`` adds N(0, 0.05 x the trace's mean) to each point).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np

from offpeak.carbon.signal import HOUR, Forecast, IntensityPoint, as_utc, hour_start, utc_now
from offpeak.carbon.traces import SHIPPED, Trace, load_trace
from offpeak.errors import CarbonUnknownZone, InvalidInput


@cache
def _shipped() -> tuple[Trace, ...]:
    return tuple(load_trace(path) for path in sorted(SHIPPED.glob("*.csv.gz")))


class ReplayProvider:
    """Serves intensities from hourly traces, one per zone.

    Deterministic: the same seed, zone and forecast start always give the same noisy
    forecast; forecasts issued at different hours draw fresh noise, as a re-issued
    real forecast would. ``latest`` and ``history`` are the trace itself, unnoised.
    """

    name = "replay"
    signal = "average"  # the intensity of the grid's mix

    def __init__(
        self,
        traces: Iterable[Trace] | None = None,
        *,
        noise: float = 0.0,
        seed: int = 0,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        if noise < 0:
            raise InvalidInput(f"replay noise must be >= 0, not {noise}")
        self._given = None if traces is None else {t.zone: t for t in traces}
        self.noise = noise
        self.seed = seed
        self._now = now

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[Path],
        *,
        noise: float = 0.0,
        seed: int = 0,
        now: Callable[[], datetime] = utc_now,
    ) -> ReplayProvider:
        """Replay the hourly CSV traces at ``paths`` (``.csv`` or ``.csv.gz``)."""
        return cls([load_trace(p) for p in paths], noise=noise, seed=seed, now=now)

    @property
    def traces(self) -> dict[str, Trace]:
        """Zone id -> trace; the shipped traces, loaded on first use, by default."""
        if self._given is None:
            self._given = {t.zone: t for t in _shipped()}
        return self._given

    @property
    def zones(self) -> list[str]:
        return sorted(self.traces)

    def _trace(self, zone: str) -> Trace:
        try:
            return self.traces[zone]
        except KeyError:
            raise CarbonUnknownZone(
                f"no replay trace for zone {zone!r}; zones: {', '.join(self.zones)}"
            ) from None

    def _values(self, trace: Trace, start: datetime, hours: int) -> np.ndarray:
        first = trace.index_of(hour_start(start))
        return np.asarray(trace.intensity[(first + np.arange(hours)) % trace.hours])

    def latest(self, zone: str) -> IntensityPoint:
        now = hour_start(self._now())
        return IntensityPoint(now, float(self._values(self._trace(zone), now, 1)[0]))

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        if hours < 0:
            raise InvalidInput(f"a forecast cannot cover {hours} hours")
        trace, first = self._trace(zone), hour_start(start)
        values = self._values(trace, first, hours)
        if self.noise > 0:
            rng = np.random.default_rng(self._noise_seed(zone, first))
            sigma = self.noise * float(trace.intensity.mean())
            values = np.clip(values + rng.normal(0.0, sigma, hours), 0.0, None)
        points = [IntensityPoint(first + i * HOUR, float(v)) for i, v in enumerate(values)]
        return Forecast(zone, points, self.name, as_utc(self._now()))

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The trace over ``[start, end)``, up to the current hour: no measured future."""
        first = hour_start(start)
        stop = min(as_utc(end), hour_start(self._now()) + HOUR)
        hours = max(0, -int((first - stop) // HOUR))  # ceil: a partial last hour counts
        values = self._values(self._trace(zone), first, hours)
        return [IntensityPoint(first + i * HOUR, float(v)) for i, v in enumerate(values)]

    def _noise_seed(self, zone: str, start: datetime) -> list[int]:
        hour = int(start.timestamp()) // 3600
        return [self.seed % 2**63, zlib.crc32(zone.encode()), hour % 2**63]
