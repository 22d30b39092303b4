"""WattTime v3 against a loopback server replaying its documented shapes: the login and
its bearer token, 5-minute MOER in lbs/MWh become hourly g/kWh, regions, refusals."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from offpeak.carbon import WattTime, open_provider
from offpeak.carbon.signal import MARGINAL, hour_start
from offpeak.config import load_settings
from offpeak.errors import CarbonMalformed, CarbonNotInPlan, CarbonUnknownZone, ConfigError
from tests.offpeak.carbon.helpers import Clock
from tests.offpeak.carbon.loopback import serve

FIVE_MINUTES = timedelta(minutes=5)
BASIC = "Basic " + base64.b64encode(b"ada:secret").decode()


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def series(start: datetime, values: list[float], units: str = "lbs_co2_per_mwh") -> Any:
    """A /v3/forecast or /v3/historical body: 5-minute points and their meta."""
    return {
        "data": [
            {"point_time": stamp(start + i * FIVE_MINUTES), "value": v}
            for i, v in enumerate(values)
        ],
        "meta": {
            "data_point_period_seconds": 300,
            "region": "CAISO_NORTH",
            "signal_type": "co2_moer",
            "units": units,
            "warnings": [],
            "model": {"date": "2023-03-01", "type": "binned_regression"},
            "generated_at_period_seconds": 300,
            "generated_at": stamp(start),
        },
    }


@dataclass
class Api:
    """The replayed WattTime: one token per login, MOER of 1000 lbs/MWh, then 500."""

    clock: Clock
    logins: int = 0
    expired: set[str] = field(default_factory=set)
    asked: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    units: str = "lbs_co2_per_mwh"
    refuse: int | None = None

    def answer(
        self, path: str, query: dict[str, list[str]], headers: Mapping[str, str]
    ) -> tuple[int, Any]:
        if path == "/login":
            if headers.get("Authorization") != BASIC:
                return 401, "Unauthorized"
            self.logins += 1
            return 200, {"token": f"token-{self.logins}"}
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("token-") or token in self.expired:
            return 401, {"error": "Unauthorized"}
        self.asked.append((path, query))
        if self.refuse:
            return self.refuse, {"error": "Forbidden: region not in your plan"}
        if path == "/v3/region-from-loc":
            return 200, {"region": "CAISO_NORTH", "region_full_name": "Northern California"}
        if path == "/v3/forecast":
            # Issued now: from the current 5-minute period on.
            now = self.clock.now().replace(second=0, microsecond=0)
            first = now - timedelta(minutes=now.minute % 5)
            count = int(query["horizon_hours"][0]) * 12
            values = [
                1000.0 if first + i * FIVE_MINUTES < hour_start(now) + timedelta(hours=2) else 500.0
                for i in range(count)
            ]
            return 200, series(first, values, self.units)
        if path == "/v3/historical":
            start = datetime.fromisoformat(query["start"][0])
            end = datetime.fromisoformat(query["end"][0])
            count = int((end - start) / FIVE_MINUTES) + 1  # both ends included
            return 200, series(start, [800.0] * count, self.units)
        return 404, {"error": "not found"}


@pytest.fixture
def api(clock: Clock) -> Api:
    return Api(clock)


@pytest.fixture
def watttime(api: Api, clock: Clock, sleeps: list[float]) -> Iterator[WattTime]:
    with (
        serve(api.answer) as url,
        WattTime(
            "ada",
            "secret",
            base_url=url,
            cache_seconds=0,
            sleep=sleeps.append,
            rng=random.Random(7),
            clock=clock.monotonic,
            now=clock.now,
        ) as provider,
    ):
        yield provider


def test_the_forecast_is_hourly_marginal_g_per_kwh_from_the_current_hour(
    watttime: WattTime, api: Api, clock: Clock
) -> None:
    forecast = watttime.forecast("CAISO_NORTH", clock.at, 4)
    assert watttime.signal == MARGINAL and forecast.source == "watttime"
    assert [p.at for p in forecast.points] == [
        hour_start(clock.at) + timedelta(hours=i) for i in range(4)
    ]
    assert forecast.values().tolist() == pytest.approx([453.6, 453.6, 226.8, 226.8])
    ((path, query),) = api.asked
    assert path == "/v3/forecast"
    assert query == {"region": ["CAISO_NORTH"], "signal_type": ["co2_moer"], "horizon_hours": ["4"]}


def test_one_login_serves_until_the_token_is_old_or_refused(
    watttime: WattTime, api: Api, clock: Clock
) -> None:
    watttime.forecast("CAISO_NORTH", clock.at, 2)
    watttime.latest("CAISO_NORTH")
    assert api.logins == 1
    clock.advance(minutes=26)  # tokens last about 30 minutes: renewed before
    watttime.forecast("CAISO_NORTH", clock.at, 2)
    assert api.logins == 2
    api.expired.add("token-2")  # expired early: a 401, one new login, the call again
    assert watttime.latest("CAISO_NORTH").gco2_per_kwh == pytest.approx(453.6)
    assert api.logins == 3


def test_bad_credentials_are_not_in_plan(api: Api, clock: Clock, sleeps: list[float]) -> None:
    with (
        serve(api.answer) as url,
        WattTime(
            "ada", "wrong", base_url=url, sleep=sleeps.append, clock=clock.monotonic, now=clock.now
        ) as provider,
        pytest.raises(CarbonNotInPlan, match="401"),
    ):
        provider.forecast("CAISO_NORTH", clock.at, 2)
    assert api.logins == 0 and api.asked == []


def test_a_region_outside_the_plan_is_refused_at_once(
    watttime: WattTime, api: Api, clock: Clock, sleeps: list[float]
) -> None:
    api.refuse = 403
    with pytest.raises(CarbonNotInPlan, match="403"):
        watttime.forecast("PJM_DC", clock.at, 2)
    assert sleeps == [] and len(api.asked) == 1


def test_a_place_is_resolved_to_its_region_once(watttime: WattTime, api: Api, clock: Clock) -> None:
    watttime.forecast("38.58,-121.49", clock.at, 1)
    watttime.forecast("38.58,-121.49", clock.at, 1)
    paths = [path for path, _ in api.asked]
    assert paths == ["/v3/region-from-loc", "/v3/forecast", "/v3/forecast"]
    assert api.asked[0][1]["latitude"] == ["38.58"] and api.asked[1][1]["region"] == ["CAISO_NORTH"]
    with pytest.raises(CarbonUnknownZone):
        watttime.forecast("95.0,10.0", clock.at, 1)


def test_history_is_hourly_and_asked_a_month_at_a_time(
    watttime: WattTime, api: Api, clock: Clock
) -> None:
    start = hour_start(clock.at) - timedelta(days=40)
    points = watttime.history("CAISO_NORTH", start, hour_start(clock.at))
    assert len(points) == 40 * 24 and {round(p.gco2_per_kwh, 2) for p in points} == {362.88}
    assert [path for path, _ in api.asked] == ["/v3/historical"] * 2


def test_unknown_units_are_malformed(watttime: WattTime, api: Api, clock: Clock) -> None:
    api.units = "percentile"
    with pytest.raises(CarbonMalformed, match="units"):
        watttime.forecast("CAISO_NORTH", clock.at, 1)


def test_open_provider_builds_watttime_from_the_settings() -> None:
    settings = load_settings(
        carbon_provider="watttime", watttime_username="ada", watttime_password="secret"
    )
    with open_provider(settings) as provider:
        assert isinstance(provider.provider, WattTime) and provider.signal == MARGINAL
    with pytest.raises(ConfigError, match="OFFPEAK_WATTTIME_USERNAME"):
        load_settings(carbon_provider="watttime", watttime_password="secret")
