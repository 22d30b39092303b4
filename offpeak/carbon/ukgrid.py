"""UK Carbon Intensity API (National Grid ESO): free, no key, half-hourly, Great
Britain only.

Zones: ``GB`` is the national series; ``GB-1`` ... ``GB-17`` are the API's regions
(``regionid``: 1 North Scotland ... 13 London ... 17 Scotland as a whole). Half-hour
periods are averaged into hourly points.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from pydantic import BaseModel, Field

from offpeak.carbon.http import JsonClient, RetryPolicy, parse_payload
from offpeak.carbon.signal import (
    HOUR,
    Forecast,
    IntensityPoint,
    as_utc,
    hour_start,
    hourly_means,
    utc_now,
    within,
)
from offpeak.errors import CarbonUnavailable, CarbonUnknownZone, InvalidInput

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
_PROVIDER = "UK Carbon Intensity"
NATIONAL = "GB"
REGIONS = range(1, 18)
_REGION = re.compile(r"^GB-(\d{1,2})$")
_FORECAST_HOURS = 48  # fw48h, the longest forward window
_RANGE_SPAN = timedelta(days=14)  # the longest from/to range the API serves


class _Intensity(BaseModel):
    forecast: float | None = None
    actual: float | None = None  # null in the future, absent in regional data


class _Period(BaseModel):
    start: datetime = Field(alias="from")
    intensity: _Intensity


class _National(BaseModel):
    data: list[_Period]


class _Region(BaseModel):
    regionid: int | None = None
    shortname: str | None = None
    data: list[_Period]


class _Regional(BaseModel):
    data: _Region | list[_Region]  # an object or a one-element list, depending on the route

    def periods(self) -> list[_Period]:
        regions = self.data if isinstance(self.data, list) else [self.data]
        return [period for region in regions for period in region.data]


def _stamp(at: datetime) -> str:
    return hour_start(at).strftime("%Y-%m-%dT%H:%MZ")


def _hourly(periods: list[_Period], *, measured: bool) -> list[IntensityPoint]:
    """Hourly means, of the measured value where ``measured`` and there is one, else
    of the forecast value."""

    def value(i: _Intensity) -> float | None:
        first, second = (i.actual, i.forecast) if measured else (i.forecast, i.actual)
        return first if first is not None else second

    return hourly_means((p.start, v) for p in periods if (v := value(p.intensity)) is not None)


class UKGrid:
    """Client of the UK Carbon Intensity API, national and regional."""

    name = "ukgrid"
    signal = "average"  # the intensity of the grid's mix

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        cache_seconds: float = 300.0,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._http = JsonClient(
            _PROVIDER,
            base_url,
            headers={"Accept": "application/json"},
            timeout=timeout,
            client=client,
            retry=retry,
            cache_seconds=cache_seconds,
            sleep=sleep,
            rng=rng,
            clock=clock,
        )
        self._now = now

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UKGrid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _periods(self, zone: str, national: str, regional: str, what: str) -> list[_Period]:
        """GET the national or the regional form of a route, by zone."""
        region = _region_of(zone)
        if region is None:
            return parse_payload(
                _National, self._http.get(national), "UK Carbon Intensity", what
            ).data
        body = self._http.get(regional.format(region=region))
        return parse_payload(_Regional, body, "UK Carbon Intensity", what).periods()

    def latest(self, zone: str) -> IntensityPoint:
        """The current half-hour's intensity (measured if known, else forecast)."""
        periods = self._periods(zone, "/intensity", "/regional/regionid/{region}", "latest")
        points = _hourly(periods, measured=True)
        if not points:
            raise CarbonUnavailable(f"{_PROVIDER} has no current value for {zone}")
        return points[-1]

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        """The ``fw48h`` forecast from the hour of ``start``, at most 48 hours."""
        if hours < 0:
            raise InvalidInput(f"a forecast cannot cover {hours} hours")
        frm = _stamp(start)
        periods = self._periods(
            zone,
            f"/intensity/{frm}/fw48h",
            f"/regional/intensity/{frm}/fw48h/regionid/{{region}}",
            "forecast",
        )
        end = hour_start(start) + min(hours, _FORECAST_HOURS) * HOUR
        points = within(_hourly(periods, measured=False), start, end)
        return Forecast(zone, points, self.name, as_utc(self._now()))

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Hours in ``[start, end)``, measured where the API has actuals (national),
        else its forecast for them (regional data has no actuals)."""
        periods: dict[datetime, _Period] = {}  # by start: spans may overlap at their ends
        span_start = hour_start(start)
        stop = min(end, hour_start(self._now()) + HOUR)
        while span_start < stop:
            span_end = min(span_start + _RANGE_SPAN, stop)
            frm, to = _stamp(span_start), _stamp(span_end)
            for period in self._periods(
                zone,
                f"/intensity/{frm}/{to}",
                f"/regional/intensity/{frm}/{to}/regionid/{{region}}",
                "history",
            ):
                periods[period.start] = period
            span_start = span_end
        return within(_hourly(list(periods.values()), measured=True), start, end)


def _region_of(zone: str) -> int | None:
    """None for the national series, else the region id; unknown zones are refused
    before any request is made."""
    if zone.strip().upper() == NATIONAL:
        return None
    match = _REGION.match(zone.strip().upper())
    if match and int(match[1]) in REGIONS:
        return int(match[1])
    raise CarbonUnknownZone(
        f"{_PROVIDER} covers zone {NATIONAL} (national) and GB-1 ... GB-17 (regions), not {zone!r}"
    )
