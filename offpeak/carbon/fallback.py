"""The fallback chain the scheduler reads forecasts through.

Free plans have no forecast and any API goes down now and then, yet deadlines must
hold. When the provider fails, a forecast comes from, in order:

1. the last good forecast for the zone, if fresh enough, cut to the hours still ahead;
2. recent history: each hour gets the value of the latest measured hour with the
   same hour of day ("same hour yesterday"), via the provider's ``history``;
3. nothing: ``Forecast(source="none", points=[])``, and work runs by deadline alone.

With a :class:`~offpeak.carbon.stored.ForecastStore`, the last good forecast outlives
the process (each scheduler tick is a new flow run): the next tick falls back on it,
and while it is younger than ``cache_for`` and was fetched for the hours now asked
for, it is the answer, without asking the provider: a tick every 30 s fetches each
zone once per cache period, not once per tick.

:meth:`FallbackProvider.forecast` never raises for a provider failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from offpeak.carbon.signal import (
    FROM_HISTORY,
    HOUR,
    LAST_GOOD,
    NO_SIGNAL,
    CarbonProvider,
    Forecast,
    IntensityPoint,
    as_utc,
    hour_start,
    signal_of,
    utc_now,
    within,
)
from offpeak.carbon.stored import ForecastStore
from offpeak.errors import CarbonSignalError

log = logging.getLogger(__name__)

_RECENT = timedelta(hours=24)


class FallbackProvider:
    """Wraps a provider; forecasts degrade to last good, then history, then none."""

    def __init__(
        self,
        provider: CarbonProvider,
        *,
        max_age: timedelta = timedelta(hours=12),
        memory: ForecastStore | None = None,
        cache_for: timedelta = timedelta(0),
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.provider = provider
        self.max_age = max_age
        self.memory = memory  # where the last good forecasts outlive the process
        self.cache_for = cache_for  # a stored forecast this young is served as it is
        self._now = now
        self._last_good: dict[str, Forecast] = {}

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def signal(self) -> str:
        """The provider's kind of signal: every stand-in is of the same kind (its own
        history, its own last forecast)."""
        return signal_of(self.provider)

    def close(self) -> None:
        close = getattr(self.provider, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> FallbackProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        """The provider's forecast (or its stored copy while fresh), or the best
        stand-in; never raises for its failures."""
        if (cached := self._cached(zone, start, hours)) is not None:
            return cached
        try:
            fresh = self.provider.forecast(zone, start, hours)
        except CarbonSignalError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if fresh.points:
                self._last_good[zone] = fresh
                if self.memory is not None:
                    self.memory.save(fresh, start, hours)
            if fresh.points or hours <= 0:
                return fresh
            reason = "the forecast was empty"
        return (
            self._from_last_good(zone, start, hours, reason)
            or self._from_history(zone, start, hours, reason)
            or self._no_signal(zone, reason)
        )

    def latest(self, zone: str) -> IntensityPoint:
        """The provider's latest value, else the last good forecast's for this hour."""
        try:
            return self.provider.latest(zone)
        except CarbonSignalError as exc:
            now = hour_start(self._now())
            last = self._last(zone)
            for point in last.points if last else ():
                if point.at == now:
                    log.warning("carbon latest for %s: %s; using the last good forecast", zone, exc)
                    return point
            raise

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The provider's history, as it is (it raises when the provider cannot answer)."""
        return self.provider.history(zone, start, end)

    def _age(self, forecast: Forecast) -> timedelta:
        return as_utc(self._now()) - as_utc(forecast.fetched_at)

    def _last(self, zone: str) -> Forecast | None:
        """The last good forecast of ``zone``: this process's, else the stored one."""
        if (last := self._last_good.get(zone)) is not None:
            return last
        stored = self.memory.load(zone) if self.memory is not None else None
        if stored is not None:
            self._last_good[zone] = stored.forecast
            return stored.forecast
        return None

    def _cached(self, zone: str, start: datetime, hours: int) -> Forecast | None:
        """The stored forecast, if young enough and fetched for every hour asked for."""
        if self.memory is None or self.cache_for <= timedelta(0) or hours <= 0:
            return None
        stored = self.memory.load(zone)
        if stored is None or not stored.covers(start, hours):
            return None
        forecast = stored.forecast
        if not timedelta(0) <= self._age(forecast) <= self.cache_for:
            return None
        return Forecast(zone, stored.cut(start, hours), forecast.source, forecast.fetched_at)

    def _from_last_good(
        self, zone: str, start: datetime, hours: int, reason: str
    ) -> Forecast | None:
        last = self._last(zone)
        if last is None:
            return None
        age = self._age(last)
        if age > self.max_age:
            return None
        points = within(last.points, start, hour_start(start) + hours * HOUR)
        if not points:
            return None
        log.warning(
            "carbon forecast for %s: %s; using the last good forecast (%s old, %d hours)",
            zone,
            reason,
            age,
            len(points),
        )
        return Forecast(zone, points, LAST_GOOD, last.fetched_at)

    def _from_history(self, zone: str, start: datetime, hours: int, reason: str) -> Forecast | None:
        now = hour_start(self._now())
        try:
            recent = self.provider.history(zone, now - _RECENT, now + HOUR)
        except CarbonSignalError as exc:
            log.warning("carbon history for %s: %s", zone, exc)
            return None
        if not recent or hours <= 0:
            return None
        by_hour_of_day = {p.at.hour: p.gco2_per_kwh for p in sorted(recent)}  # latest wins
        mean = sum(by_hour_of_day.values()) / len(by_hour_of_day)
        first = hour_start(start)
        points = [
            IntensityPoint(at, by_hour_of_day.get(at.hour, mean))
            for at in (first + i * HOUR for i in range(hours))
        ]
        log.warning(
            "carbon forecast for %s: %s; using the same hours of the last day (%d measured)",
            zone,
            reason,
            len(recent),
        )
        return Forecast(zone, points, FROM_HISTORY, as_utc(self._now()))

    def _no_signal(self, zone: str, reason: str) -> Forecast:
        log.warning(
            "carbon forecast for %s: %s; no signal: work runs by its deadline alone", zone, reason
        )
        return Forecast(zone, [], NO_SIGNAL, as_utc(self._now()))
