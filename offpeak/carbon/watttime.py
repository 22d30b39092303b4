"""WattTime API v3: the marginal operating emissions rate (MOER) of a grid region.

A marginal signal, unlike the other providers: how much CO2 the plants that answer one
more kWh emit, not the average of the mix (`offpeak.carbon.signal.MARGINAL`). A zone is
a WattTime region name (``CAISO_NORTH``, ``DE``, ``PJM_DC``) or a ``lat,lon`` pair, which
``/v3/region-from-loc`` resolves to its region.

``GET /login`` with HTTP Basic gives a bearer token valid about 30 minutes; it is
renewed before then, and once more when a call is refused with 401 (expired early).
``/v3/forecast`` and ``/v3/historical`` send 5-minute points in lbs CO2 per MWh
(``meta.units``): they become hourly means in g per kWh (x 0.4536).
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel

from offpeak.carbon.electricitymaps import location
from offpeak.carbon.http import JsonClient, Params, RetryPolicy, parse_payload
from offpeak.carbon.signal import (
    HOUR,
    MARGINAL,
    Forecast,
    IntensityPoint,
    as_utc,
    hour_start,
    hourly_means,
    utc_now,
    within,
)
from offpeak.errors import CarbonMalformed, CarbonNotInPlan, CarbonUnavailable, InvalidInput

DEFAULT_BASE_URL = "https://api.watttime.org"
_PROVIDER = "WattTime"
SIGNAL_TYPE = "co2_moer"
# g/kWh per unit of meta.units: one lb is 453.6 g, one MWh 1000 kWh.
_TO_G_PER_KWH = {"lbs_co2_per_mwh": 0.4536, "kg_co2_per_mwh": 1.0, "g_co2_per_kwh": 1.0}
_TOKEN_LIFE = 25 * 60.0  # seconds a token is used: WattTime's last about 30 minutes
_MAX_HORIZON = 72  # hours of forecast v3 offers
_RANGE_SPAN = timedelta(days=30)  # /v3/historical: at most a month per request
Samples = dict[datetime, float]  # g/kWh by the start of each 5-minute point


class _Login(BaseModel):
    token: str


class _Point(BaseModel):
    point_time: datetime
    value: float


class _Meta(BaseModel):
    units: str = "lbs_co2_per_mwh"


class _Series(BaseModel):
    data: list[_Point]
    meta: _Meta = _Meta()


class _Region(BaseModel):
    region: str


def _iso(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


class WattTime:
    """Client of the WattTime v3 endpoints over httpx."""

    name = "watttime"
    signal = MARGINAL

    def __init__(
        self,
        username: str,
        password: str,
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
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        common: dict[str, Any] = {
            "timeout": timeout,
            "client": client,
            "retry": retry,
            "sleep": sleep,
            "rng": rng,
            "clock": clock,
        }
        # A login is never cached: a token is asked for only when one is needed.
        self._login = JsonClient(
            _PROVIDER,
            base_url,
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            cache_seconds=0,
            **common,
        )
        self._http = JsonClient(
            _PROVIDER,
            base_url,
            headers={"Accept": "application/json"},
            cache_seconds=cache_seconds,
            **common,
        )
        self._clock = clock
        self._now = now
        self._token_at: float | None = None
        self._regions: dict[str, str] = {}

    def close(self) -> None:
        self._login.close()
        self._http.close()

    def __enter__(self) -> WattTime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authorize(self, *, renew: bool = False) -> None:
        fresh = self._token_at is not None and self._clock() - self._token_at < _TOKEN_LIFE
        if fresh and not renew:
            return
        login = parse_payload(_Login, self._login.get("/login"), _PROVIDER, "login")
        self._http.set_header("Authorization", f"Bearer {login.token}")
        self._token_at = self._clock()

    def _get(self, path: str, params: Params) -> Any:
        """GET with a valid token: a 401 gets one new login and one more try."""
        self._authorize()
        try:
            return self._http.get(path, params)
        except CarbonNotInPlan as exc:
            if "401" not in exc.message:
                raise
        self._authorize(renew=True)
        return self._http.get(path, params)

    def region(self, zone: str) -> str:
        """The WattTime region of ``zone``: itself, or the region around ``lat,lon``."""
        where = location(zone)
        if "zone" in where:
            return str(where["zone"])
        if zone not in self._regions:
            query: Params = {
                "latitude": where["lat"],
                "longitude": where["lon"],
                "signal_type": SIGNAL_TYPE,
            }
            body = self._get("/v3/region-from-loc", query)
            self._regions[zone] = parse_payload(_Region, body, _PROVIDER, "region").region
        return self._regions[zone]

    def _samples(self, path: str, zone: str, what: str, **params: str | int) -> Samples:
        """The 5-minute points of ``path`` for ``zone``, in g/kWh."""
        query: Params = {"region": self.region(zone), "signal_type": SIGNAL_TYPE, **params}
        series = parse_payload(_Series, self._get(path, query), _PROVIDER, what)
        factor = _TO_G_PER_KWH.get(series.meta.units)
        if factor is None:
            raise CarbonMalformed(f"{_PROVIDER} {what}: unknown units {series.meta.units!r}")
        return {as_utc(p.point_time): p.value * factor for p in series.data}

    def forecast(self, zone: str, start: datetime, hours: int) -> Forecast:
        """``/v3/forecast``: MOER from now, hourly, cut to the hours asked for (72 at most)."""
        if hours < 0:
            raise InvalidInput(f"a forecast cannot cover {hours} hours")
        ahead = int((hour_start(start) - hour_start(self._now())) / HOUR)
        horizon = min(max(hours + max(ahead, 0), 1), _MAX_HORIZON)
        samples = self._samples("/v3/forecast", zone, "forecast", horizon_hours=horizon)
        points = hourly_means(samples.items())
        end = hour_start(start) + hours * HOUR
        return Forecast(zone, within(points, start, end), self.name, as_utc(self._now()))

    def latest(self, zone: str) -> IntensityPoint:
        """The current hour's MOER, as the forecast issued now has it."""
        now = hour_start(self._now())
        samples = self._samples("/v3/forecast", zone, "latest", horizon_hours=1)
        current = [p for p in hourly_means(samples.items()) if p.at == now]
        if not current:
            raise CarbonUnavailable(f"{_PROVIDER} has no current value for {zone}")
        return current[0]

    def history(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """``/v3/historical``: measured MOER in ``[start, end)``, a month per request."""
        samples: Samples = {}  # by time: a point on a span's end may come twice
        span_start, stop = hour_start(start), min(as_utc(end), hour_start(self._now()) + HOUR)
        while span_start < stop:
            span_end = min(span_start + _RANGE_SPAN, stop)
            samples |= self._samples(
                "/v3/historical", zone, "history", start=_iso(span_start), end=_iso(span_end)
            )
            span_start = span_end
        return within(hourly_means(samples.items()), start, end)
