"""Forecasts that outlive a process: each zone's last good forecast in the object store.

Every scheduler tick is a new flow run in a new process, so a forecast kept in memory
is gone by the next tick: the fallback chain's "last good forecast" would never fire,
and every tick would ask the provider again. The chain keeps its last good forecast of
each zone here instead, as one small JSON object per provider and zone under
``carbon/``; the next tick reads it back, both as a cache (fresh enough: no request at
all) and as the stand-in while the provider is down.

Why the object store and not the state database: this is a cache that may be lost at
any time without harm, written whole by one tick and read whole by the next (last
writer wins, which is right for a cache); every process that plans already holds the
store; and it needs no schema migration. A store that cannot be read or written only
costs the cache: the chain goes on without it, logging why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from offpeak.carbon.signal import HOUR, Forecast, IntensityPoint, as_utc, hour_start, within
from offpeak.errors import ObjectNotFound, StorageError
from offpeak.storage.base import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "carbon"


class _Point(BaseModel):
    at: datetime
    gco2_per_kwh: float


class _Record(BaseModel):
    """The stored object: a provider's forecast for one zone and the window asked for."""

    zone: str
    source: str  # the provider's name
    fetched_at: datetime
    # The window asked for: within it, the points are all the provider had.
    since: datetime
    until: datetime
    points: list[_Point]


@dataclass(frozen=True)
class StoredForecast:
    """A forecast read back, with the window it was fetched for."""

    forecast: Forecast
    since: datetime
    until: datetime

    def covers(self, start: datetime, hours: int) -> bool:
        """Whether it was fetched for every hour of ``hours`` hours from ``start``: then
        asking the provider again would bring nothing more (only newer values)."""
        first = hour_start(start)
        return self.since <= first and first + hours * HOUR <= self.until

    def cut(self, start: datetime, hours: int) -> list[IntensityPoint]:
        """Its points from the hour of ``start`` for ``hours`` hours."""
        return within(self.forecast.points, start, hour_start(start) + hours * HOUR)


class ForecastStore:
    """The last good forecast of each zone of one provider, in an object store."""

    def __init__(self, store: ObjectStore, provider: str) -> None:
        self.store = store
        self.provider = provider

    def key(self, zone: str) -> str:
        """``carbon/<provider>/<zone>.json``, the zone quoted (``52.5,13.4`` is a zone)."""
        return f"{PREFIX}/{quote(self.provider, safe='')}/{quote(zone, safe='')}.json"

    def load(self, zone: str) -> StoredForecast | None:
        """The stored forecast of ``zone``, or None if there is none or it cannot be read."""
        key = self.key(zone)
        try:
            record = _Record.model_validate_json(self.store.get(key))
        except ObjectNotFound:
            return None
        except (StorageError, ValidationError) as exc:
            log.warning("carbon forecast of %s not read from %s: %s", zone, key, exc)
            return None
        points = [IntensityPoint(as_utc(p.at), p.gco2_per_kwh) for p in record.points]
        forecast = Forecast(record.zone, points, record.source, as_utc(record.fetched_at))
        return StoredForecast(forecast, as_utc(record.since), as_utc(record.until))

    def save(self, forecast: Forecast, start: datetime, hours: int) -> None:
        """Keep ``forecast``, fetched for ``hours`` hours from ``start``, for the next tick."""
        record = _Record(
            zone=forecast.zone,
            source=forecast.source,
            fetched_at=as_utc(forecast.fetched_at),
            since=hour_start(start),
            until=hour_start(start) + hours * HOUR,
            points=[_Point(at=p.at, gco2_per_kwh=p.gco2_per_kwh) for p in forecast.points],
        )
        key = self.key(forecast.zone)
        try:
            self.store.put(key, record.model_dump_json().encode())
        except StorageError as exc:
            log.warning("carbon forecast of %s not kept in %s: %s", forecast.zone, key, exc)
