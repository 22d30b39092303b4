"""Electricity Maps API v3: life-cycle carbon intensity, latest, past and forecast.

A zone is an Electricity Maps zone key (``DE``, ``US-CAL-CISO``) or a ``lat,lon``
pair (``52.52,13.40``), which the API resolves to the zone around that point.
Responses are cached for a few minutes (``cache_seconds``), so a scheduler tick that
asks about each pool's zone costs one request per zone, not one per pool or per call.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
from pydantic import BaseModel, Field

from offpeak.carbon.http import JsonClient, Params, RetryPolicy, parse_payload
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
from offpeak.errors import (
    CarbonMalformed,
    CarbonSignalError,
    CarbonUnavailable,
    CarbonUnknownZone,
    InvalidInput,
)

DEFAULT_BASE_URL = "https://api.electricitymaps.com/v3"
# Refusals that name the plan: asking again will not help.
PLAN_REFUSAL = re.compile(
    r"unauthori[sz]ed for zone|not available|not (included|part of)|\bplan\b|upgrade", re.I
)
_HORIZONS = (6, 24, 48, 72)  # the forecast lengths the API offers, by plan
_DEFAULT_HORIZON = 24  # what every forecast plan gets without asking
_HISTORY_SPAN = timedelta(hours=24)  # /history: the last 24 hours
_RANGE_SPAN = timedelta(days=10)  # /past-range: at most 10 days of hourly points
Payload = TypeVar("Payload", bound=BaseModel)
Value = str | int | float
_LAT_LON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")


class _Point(BaseModel):
    at: datetime = Field(alias="datetime")
    intensity: float | None = Field(alias="carbonIntensity")  # null: no value that hour


class _History(BaseModel):
    history: list[_Point]


class _Range(BaseModel):
    data: list[_Point]


class _Forecast(BaseModel):
    forecast: list[_Point]


def location(zone: str) -> dict[str, Value]:
    """Query parameters that place ``zone``: ``zone=`` or ``lat=``/``lon=``."""
    if match := _LAT_LON.match(zone):
        lat, lon = float(match[1]), float(match[2])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise CarbonUnknownZone(f"{zone!r} is not a latitude,longitude pair")
        return {"lat": lat, "lon": lon}
    if not zone.strip():
        raise CarbonUnknownZone("an empty zone names no place")
    return {"zone": zone.strip()}


def _iso(at: datetime) -> str:
    return hour_start(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _points(raw: list[_Point]) -> list[IntensityPoint]:
    return hourly_means((p.at, p.intensity) for p in raw if p.intensity is not None)


class ElectricityMaps:
    """Client of the Electricity Maps carbon-intensity endpoints over httpx."""

    name = "electricitymaps"
    signal = "average"  # the intensity of the grid's mix

    def __init__(
        self,
        token: str,
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
            "Electricity Maps",
            base_url,
            headers={"auth-token": token, "Accept": "application/json"},
            timeout=timeout,
            client=client,
            retry=retry,
            cache_seconds=cache_seconds,
            plan_refusal=PLAN_REFUSAL,
            sleep=sleep,
            rng=rng,
            clock=clock,
        )
        self._now = now
        self._horizon_cap = max(_HORIZONS)  # lowered when the plan refuses a longer one

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ElectricityMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, model: type[Payload], endpoint: str, zone: str, **params: Value) -> Payload:
        """GET ``/carbon-intensity/<endpoint>`` for ``zone`` and validate it as ``model``."""
        query: Params = {**location(zone), **params}
        body = self._http.get(f"/carbon-intensity/{endpoint}", query)
        return parse_payload(model, body, "Electricity Maps", endpoint)

    def latest(self, zone: str) -> IntensityPoint:
        """``/carbon-intensity/latest``: the current hour's intensity."""
        return self._single(self._fetch(_Point, "latest", zone), zone, "latest")

    def past(self, zone: str, at: datetime) -> IntensityPoint:
        """``/carbon-intensity/past``: the intensity of the hour of ``at``."""
        return self._single(self._fetch(_Point, "past", zone, datetime=_iso(at)), zone, "past")

    def _single(self, point: _Point, zone: str, endpoint: str) -> IntensityPoint:
        if point.intensity is None:
            raise CarbonUnavailable(f"Electricity Maps has no {endpoint} intensity for {zone}")
        return IntensityPoint(hour_start(point.at), point.intensity)

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Measured hours in ``[start, end)``: ``/history`` when they all lie in the last
        24 hours (the free tier has it), else ``/past-range`` in spans of 10 days."""
        now = hour_start(self._now())
        if hour_start(start) >= now - _HISTORY_SPAN:
            return within(_points(self._fetch(_History, "history", zone).history), start, end)
        points: list[IntensityPoint] = []
        span_start, stop = hour_start(start), min(as_utc(end), now + HOUR)
        while span_start < stop:
            span_end = min(span_start + _RANGE_SPAN, stop)
            page = self._fetch(
                _Range, "past-range", zone, start=_iso(span_start), end=_iso(span_end)
            )
            points += _points(page.data)
            span_start = span_end
        return within(set(points), start, end)

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        """``/carbon-intensity/forecast``, cut to the hours asked for.

        The API's forecast starts at the current hour; a horizon longer than the
        default 24 hours is asked for only when needed, and if the plan refuses it
        the client settles for the default from then on.
        """
        if hours < 0:
            raise InvalidInput(f"a forecast cannot cover {hours} hours")
        now = hour_start(self._now())
        needed = hours + max(0, int((hour_start(start) - now) / HOUR))
        horizon = next((h for h in _HORIZONS if h >= needed), max(_HORIZONS))
        horizon = min(horizon, self._horizon_cap)
        try:
            body = self._forecast_body(zone, horizon)
        except CarbonSignalError as exc:
            transient_or_broken = CarbonUnavailable | CarbonUnknownZone | CarbonMalformed
            if horizon <= _DEFAULT_HORIZON or isinstance(exc, transient_or_broken):
                raise
            self._horizon_cap = _DEFAULT_HORIZON
            body = self._forecast_body(zone, _DEFAULT_HORIZON)
        points = within(_points(body.forecast), start, hour_start(start) + hours * HOUR)
        return Forecast(zone, points, self.name, as_utc(self._now()))

    def _forecast_body(self, zone: str, horizon: int) -> _Forecast:
        if horizon <= _DEFAULT_HORIZON:
            return self._fetch(_Forecast, "forecast", zone)
        return self._fetch(_Forecast, "forecast", zone, horizonHours=horizon)
