from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.http import RetryPolicy
from offpeak.carbon.signal import CarbonProvider, IntensityPoint
from offpeak.errors import (
    CarbonMalformed,
    CarbonNotInPlan,
    CarbonSignalError,
    CarbonUnavailable,
    CarbonUnknownZone,
)
from tests.offpeak.carbon.helpers import NOW, Clock, em_forecast, em_point

HOUR = timedelta(hours=1)
THIS_HOUR = datetime(2024, 3, 6, 19, tzinfo=UTC)
POLICY = RetryPolicy()


def test_latest_sends_the_token_and_the_zone(em: ElectricityMaps, em_api: respx.MockRouter) -> None:
    route = em_api.get("/carbon-intensity/latest", params={"zone": "DE"}).respond(
        json=em_point(THIS_HOUR, 302)
    )
    assert em.latest("DE") == IntensityPoint(THIS_HOUR, 302.0)
    request = route.calls.last.request
    assert request.headers["auth-token"] == "secret-token"


def test_latest_by_latitude_and_longitude_sends_lat_and_lon(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    route = em_api.get("/carbon-intensity/latest", params={"lat": "52.52", "lon": "13.4"})
    route.respond(json=em_point(THIS_HOUR, 290))
    assert em.latest("52.52, 13.4").gco2_per_kwh == 290.0
    assert "zone" not in route.calls.last.request.url.params


def test_latitude_out_of_range_is_an_unknown_zone_without_a_request(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    with pytest.raises(CarbonUnknownZone):
        em.latest("95.0,13.4")
    assert not em_api.calls


def test_latest_with_null_intensity_is_unavailable(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    em_api.get("/carbon-intensity/latest").respond(json=em_point(THIS_HOUR, None))
    with pytest.raises(CarbonUnavailable):
        em.latest("DE")


def test_past_asks_for_the_hour_and_parses_the_point(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    at = datetime(2024, 3, 1, 7, tzinfo=UTC)
    route = em_api.get(
        "/carbon-intensity/past", params={"zone": "DE", "datetime": "2024-03-01T07:00:00Z"}
    ).respond(json=em_point(at, 410))
    assert em.past("DE", at + timedelta(minutes=25)) == IntensityPoint(at, 410.0)
    assert route.called


def test_history_parses_the_last_day_and_skips_null_points(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    hours = [THIS_HOUR - 23 * HOUR + i * HOUR for i in range(24)]
    values: list[float | None] = [300.0 + i for i in range(24)]
    values[5] = None
    em_api.get("/carbon-intensity/history", params={"zone": "DE"}).respond(
        json={"zone": "DE", "history": [em_point(h, v) for h, v in zip(hours, values, strict=True)]}
    )
    points = em.history("DE", THIS_HOUR - 23 * HOUR, THIS_HOUR + HOUR)
    assert len(points) == 23
    assert hours[5] not in {p.at for p in points}
    assert points[0] == IntensityPoint(hours[0], 300.0)
    assert points[-1] == IntensityPoint(THIS_HOUR, 323.0)


def test_history_is_cut_to_the_range_asked_for(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    hours = [THIS_HOUR - 23 * HOUR + i * HOUR for i in range(24)]
    em_api.get("/carbon-intensity/history").respond(
        json={"zone": "DE", "history": [em_point(h, 100.0 + i) for i, h in enumerate(hours)]}
    )
    points = em.history("DE", THIS_HOUR - 3 * HOUR, THIS_HOUR - HOUR)
    assert [p.at for p in points] == [THIS_HOUR - 3 * HOUR, THIS_HOUR - 2 * HOUR]


def test_history_older_than_a_day_reads_past_range_in_ten_day_spans(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    start = THIS_HOUR - timedelta(days=15)

    def page(request: httpx.Request) -> httpx.Response:
        first = datetime.fromisoformat(request.url.params["start"])
        last = datetime.fromisoformat(request.url.params["end"])
        hours = int((last - first) / HOUR)
        points = [em_point(first + i * HOUR, 200.0) for i in range(hours)]
        return httpx.Response(200, json={"zone": "DE", "data": points})

    route = em_api.get("/carbon-intensity/past-range").mock(side_effect=page)
    points = em.history("DE", start, THIS_HOUR - timedelta(days=1))
    assert [call.request.url.params["start"] for call in route.calls] == [
        "2024-02-20T19:00:00Z",
        "2024-03-01T19:00:00Z",
    ]
    assert len(points) == 14 * 24
    assert points[0].at == start


def test_forecast_returns_the_hours_asked_for_from_the_start_hour(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    values = [float(300 + i) for i in range(25)]  # a 24 h forecast: ~25 points from now
    route = em_api.get("/carbon-intensity/forecast", params={"zone": "DE"}).respond(
        json=em_forecast(THIS_HOUR, values)
    )
    forecast = em.forecast("DE", NOW + 2 * HOUR, 6)
    assert forecast.source == "electricitymaps"
    assert forecast.zone == "DE"
    assert forecast.fetched_at == NOW
    assert forecast.start == THIS_HOUR + 2 * HOUR
    assert forecast.values().tolist() == values[2:8]
    assert "horizonHours" not in route.calls.last.request.url.params


def test_forecast_skips_null_points(em: ElectricityMaps, em_api: respx.MockRouter) -> None:
    em_api.get("/carbon-intensity/forecast").respond(
        json=em_forecast(THIS_HOUR, [300.0, None, 320.0])
    )
    assert [p.at for p in em.forecast("DE", NOW, 3).points] == [THIS_HOUR, THIS_HOUR + 2 * HOUR]


def test_forecast_longer_than_a_day_asks_for_a_longer_horizon(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    route = em_api.get("/carbon-intensity/forecast", params={"horizonHours": "48"}).respond(
        json=em_forecast(THIS_HOUR, [250.0] * 49)
    )
    assert len(em.forecast("DE", NOW, 36).points) == 36
    assert route.call_count == 1


def test_forecast_horizon_refused_by_the_plan_settles_for_the_default(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    longer = em_api.get("/carbon-intensity/forecast", params={"horizonHours": "72"}).respond(
        401, json={"error": "Forecast horizon not available in your plan"}
    )
    default = em_api.get("/carbon-intensity/forecast").respond(
        json=em_forecast(THIS_HOUR, [250.0] * 25)
    )
    assert len(em.forecast("DE", NOW, 60).points) == 25
    assert len(em.forecast("DE", NOW, 60).points) == 25  # the cap is remembered (and cached)
    assert longer.call_count == 1
    assert default.call_count == 1


def test_a_401_then_success_is_retried_after_a_backoff(
    em: ElectricityMaps, em_api: respx.MockRouter, sleeps: list[float]
) -> None:
    em_api.get("/carbon-intensity/latest").mock(
        side_effect=[
            httpx.Response(401, json={"error": "Invalid auth-token"}),
            httpx.Response(200, json=em_point(THIS_HOUR, 302)),
        ]
    )
    assert em.latest("DE").gco2_per_kwh == 302.0
    assert len(sleeps) == 1
    assert POLICY.base_delay / 2 <= sleeps[0] <= POLICY.base_delay


def test_a_401_forever_raises_not_in_plan_after_bounded_attempts(
    em: ElectricityMaps, em_api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = em_api.get("/carbon-intensity/latest").respond(
        401, json={"error": "Invalid auth-token"}
    )
    with pytest.raises(CarbonNotInPlan, match="Invalid auth-token") as caught:
        em.latest("DE")
    assert route.call_count == POLICY.unauthorized_attempts
    assert len(sleeps) == POLICY.unauthorized_attempts - 1
    assert caught.value.code == "carbon_not_in_plan"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "Token unauthorized for zoneKey FR"}),
        (401, {"error": "Endpoint not available"}),
        (403, "Access denied"),
        (400, {"error": "horizonHours=72 is not available for your plan"}),
    ],
)
def test_a_refusal_naming_the_plan_raises_not_in_plan_at_once(
    em: ElectricityMaps,
    em_api: respx.MockRouter,
    sleeps: list[float],
    status: int,
    body: object,
) -> None:
    response = (
        httpx.Response(status, json=body)
        if isinstance(body, dict)
        else httpx.Response(status, text=str(body))
    )
    route = em_api.get("/carbon-intensity/latest").mock(return_value=response)
    with pytest.raises(CarbonNotInPlan) as caught:
        em.latest("FR")
    assert route.call_count == 1
    assert sleeps == []
    assert isinstance(caught.value, ConnectionError)


def test_a_429_then_success_waits_as_retry_after_says(
    em: ElectricityMaps, em_api: respx.MockRouter, sleeps: list[float]
) -> None:
    em_api.get("/carbon-intensity/latest").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "Too many requests"}),
            httpx.Response(200, json=em_point(THIS_HOUR, 302)),
        ]
    )
    assert em.latest("DE").gco2_per_kwh == 302.0
    assert sleeps == [3.0]


def test_server_errors_raise_unavailable_after_backing_off_exponentially(
    em: ElectricityMaps, em_api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = em_api.get("/carbon-intensity/forecast").respond(500, text="Internal Server Error")
    with pytest.raises(CarbonUnavailable, match="500"):
        em.forecast("DE", NOW, 24)
    assert route.call_count == POLICY.attempts
    ceilings = [POLICY.base_delay * 2**i for i in range(POLICY.attempts - 1)]
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))


def test_a_server_error_then_success_is_retried(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    em_api.get("/carbon-intensity/latest").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=em_point(THIS_HOUR, 280))]
    )
    assert em.latest("DE").gco2_per_kwh == 280.0


@pytest.mark.parametrize(
    "error", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("down")]
)
def test_timeouts_and_network_errors_raise_unavailable_after_the_retries(
    em: ElectricityMaps, em_api: respx.MockRouter, sleeps: list[float], error: Exception
) -> None:
    route = em_api.get("/carbon-intensity/latest").mock(side_effect=error)
    with pytest.raises(CarbonUnavailable):
        em.latest("DE")
    assert route.call_count == POLICY.attempts
    assert len(sleeps) == POLICY.attempts - 1


def test_a_timeout_then_success_is_retried(em: ElectricityMaps, em_api: respx.MockRouter) -> None:
    em_api.get("/carbon-intensity/latest").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=em_point(THIS_HOUR, 1))]
    )
    assert em.latest("DE").gco2_per_kwh == 1.0


def test_a_404_raises_unknown_zone_without_retrying(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    route = em_api.get("/carbon-intensity/latest").respond(
        404, json={"error": "No data available for zone XX"}
    )
    with pytest.raises(CarbonUnknownZone, match="XX") as caught:
        em.latest("XX")
    assert route.call_count == 1
    assert isinstance(caught.value, LookupError)


def test_a_400_raises_a_bad_request_signal_error_without_retrying(
    em: ElectricityMaps, em_api: respx.MockRouter
) -> None:
    route = em_api.get("/carbon-intensity/latest").respond(400, json={"error": "Invalid datetime"})
    with pytest.raises(CarbonSignalError, match="Invalid datetime") as caught:
        em.latest("DE")
    assert caught.value.code == "carbon_bad_request"
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("latest", "<html>maintenance</html>"),
        ("latest", {"zone": "DE", "datetime": "2024-03-06T19:00:00.000Z"}),
        ("latest", {"zone": "DE", "carbonIntensity": 302, "datetime": "yesterday"}),
        ("latest", {"zone": "DE", "carbonIntensity": "lots", "datetime": "2024-03-06T19:00Z"}),
        ("latest", ["not", "an", "object"]),
        ("forecast", {"zone": "DE", "forecast": {"carbonIntensity": 1}}),
        ("forecast", {"zone": "DE", "data": []}),
        ("history", {"zone": "DE", "history": [{"carbonIntensity": 3}]}),
    ],
)
def test_a_malformed_payload_raises_malformed(
    em: ElectricityMaps, em_api: respx.MockRouter, endpoint: str, body: object
) -> None:
    response = (
        httpx.Response(200, text=body) if isinstance(body, str) else httpx.Response(200, json=body)
    )
    em_api.get(f"/carbon-intensity/{endpoint}").mock(return_value=response)
    calls = {
        "latest": lambda: em.latest("DE"),
        "forecast": lambda: em.forecast("DE", NOW, 24),
        "history": lambda: em.history("DE", NOW - 3 * HOUR, NOW),
    }
    with pytest.raises(CarbonMalformed) as caught:
        calls[endpoint]()
    assert caught.value.code == "carbon_malformed"


def test_answers_are_cached_so_a_tick_asks_each_zone_once(
    em: ElectricityMaps, em_api: respx.MockRouter, clock: Clock
) -> None:
    de = em_api.get("/carbon-intensity/forecast", params={"zone": "DE"}).respond(
        json=em_forecast(THIS_HOUR, [300.0] * 25)
    )
    fr = em_api.get("/carbon-intensity/forecast", params={"zone": "FR"}).respond(
        json=em_forecast(THIS_HOUR, [50.0] * 25, zone="FR")
    )
    for _ in range(3):  # three pools in DE, one in FR
        em.forecast("DE", NOW, 24)
    em.forecast("FR", NOW, 24)
    assert (de.call_count, fr.call_count) == (1, 1)
    clock.advance(minutes=4)
    em.forecast("DE", NOW, 12)
    assert de.call_count == 1
    clock.advance(minutes=2)  # past the 5-minute TTL
    em.forecast("DE", NOW, 24)
    assert de.call_count == 2


def test_failures_are_not_cached(em: ElectricityMaps, em_api: respx.MockRouter) -> None:
    route = em_api.get("/carbon-intensity/latest").mock(
        side_effect=[
            httpx.Response(404, json={"error": "no data"}),
            httpx.Response(200, json=em_point(THIS_HOUR, 9)),
        ]
    )
    with pytest.raises(CarbonUnknownZone):
        em.latest("DE")
    assert em.latest("DE").gco2_per_kwh == 9.0
    assert route.call_count == 2


def test_the_base_url_is_configurable_and_an_injected_client_is_left_open(
    clock: Clock,
) -> None:
    client = httpx.Client()
    with respx.mock(base_url="http://127.0.0.1:9/legacy/v3") as router:
        router.get("/carbon-intensity/latest").respond(json=em_point(THIS_HOUR, 5))
        with ElectricityMaps(
            "t", base_url="http://127.0.0.1:9/legacy/v3/", client=client, now=clock.now
        ) as provider:
            assert provider.latest("DE").gco2_per_kwh == 5.0
    assert not client.is_closed
    client.close()


def test_electricity_maps_is_a_carbon_provider(em: ElectricityMaps) -> None:
    assert isinstance(em, CarbonProvider)
