from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from offpeak.carbon.signal import CarbonProvider, IntensityPoint
from offpeak.carbon.ukgrid import UKGrid
from offpeak.errors import CarbonMalformed, CarbonSignalError, CarbonUnknownZone
from tests.offpeak.carbon.helpers import NOW, uk_periods, uk_region

HOUR = timedelta(hours=1)
THIS_HOUR = datetime(2024, 3, 6, 19, tzinfo=UTC)
FORECAST_PATH = "/intensity/2024-03-06T19:00Z/fw48h"


def test_national_forecast_averages_half_hours_into_hours(
    uk: UKGrid, uk_api: respx.MockRouter
) -> None:
    periods = uk_periods(
        THIS_HOUR, [200, 220, 180, 190, 100, 120], [999, None, None, None, None, None]
    )
    route = uk_api.get(FORECAST_PATH).respond(json={"data": periods})
    forecast = uk.forecast("GB", NOW, 3)
    assert forecast.source == "ukgrid"
    assert forecast.points == (
        IntensityPoint(THIS_HOUR, 210.0),  # forecasts, even where an actual is known
        IntensityPoint(THIS_HOUR + HOUR, 185.0),
        IntensityPoint(THIS_HOUR + 2 * HOUR, 110.0),
    )
    assert route.calls.last.request.headers["accept"] == "application/json"


def test_national_forecast_is_cut_to_the_hours_asked_for(
    uk: UKGrid, uk_api: respx.MockRouter
) -> None:
    uk_api.get(FORECAST_PATH).respond(json={"data": uk_periods(THIS_HOUR, [150.0] * 96)})
    assert len(uk.forecast("GB", NOW, 10).points) == 10
    assert len(uk.forecast("GB", NOW, 72).points) == 48  # fw48h is as far as it goes


@pytest.mark.parametrize("shape", ["object", "list"])
def test_regional_forecast_accepts_data_as_an_object_or_a_list(
    uk: UKGrid, uk_api: respx.MockRouter, shape: str
) -> None:
    region = uk_region(13, uk_periods(THIS_HOUR, [80, 100, 60, 60]))
    uk_api.get("/regional/intensity/2024-03-06T19:00Z/fw48h/regionid/13").respond(
        json={"data": region if shape == "object" else [region]}
    )
    forecast = uk.forecast("GB-13", NOW, 2)
    assert forecast.zone == "GB-13"
    assert forecast.values().tolist() == [90.0, 60.0]


def test_latest_national_prefers_the_measured_value(uk: UKGrid, uk_api: respx.MockRouter) -> None:
    uk_api.get("/intensity").respond(
        json={"data": uk_periods(THIS_HOUR + timedelta(minutes=30), [266], [263])}
    )
    assert uk.latest("GB") == IntensityPoint(THIS_HOUR, 263.0)


def test_latest_regional_uses_the_forecast_value(uk: UKGrid, uk_api: respx.MockRouter) -> None:
    uk_api.get("/regional/regionid/1").respond(
        json={"data": [uk_region(1, uk_periods(THIS_HOUR, [12]))]}
    )
    assert uk.latest("GB-1") == IntensityPoint(THIS_HOUR, 12.0)


def test_history_uses_actuals_where_known_over_the_range(
    uk: UKGrid, uk_api: respx.MockRouter
) -> None:
    start = THIS_HOUR - 2 * HOUR
    route = uk_api.get("/intensity/2024-03-06T17:00Z/2024-03-06T20:00Z").respond(
        json={"data": uk_periods(start, [1, 2, 3, 4, 5, 6], [10, 20, 30, 40, None, None])}
    )
    points = uk.history("GB", start, NOW + 3 * HOUR)  # the future is not history
    assert points == [
        IntensityPoint(start, 15.0),
        IntensityPoint(start + HOUR, 35.0),
        IntensityPoint(THIS_HOUR, 5.5),  # no actuals yet: the forecast stands in
    ]
    assert route.call_count == 1


@pytest.mark.parametrize("zone", ["FR", "GB-0", "GB-18", "GB-NIR", ""])
def test_zones_outside_great_britain_are_refused_without_a_request(
    uk: UKGrid, uk_api: respx.MockRouter, zone: str
) -> None:
    with pytest.raises(CarbonUnknownZone, match="GB-17"):
        uk.forecast(zone, NOW, 24)
    assert not uk_api.calls


def test_an_error_body_is_reported_with_its_message(uk: UKGrid, uk_api: respx.MockRouter) -> None:
    uk_api.get(FORECAST_PATH).respond(
        400, json={"error": {"code": "400 Bad Request", "message": "Please enter a valid date"}}
    )
    with pytest.raises(CarbonSignalError, match="Please enter a valid date"):
        uk.forecast("GB", NOW, 24)


def test_server_errors_are_retried_with_the_shared_policy(
    uk: UKGrid, uk_api: respx.MockRouter, sleeps: list[float]
) -> None:
    uk_api.get(FORECAST_PATH).mock(
        side_effect=[
            httpx.Response(502),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"data": uk_periods(THIS_HOUR, [100, 100])}),
        ]
    )
    assert uk.forecast("GB", NOW, 1).values().tolist() == [100.0]
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"from": "2024-03-06T19:00Z", "to": "2024-03-06T19:30Z"}]},
        {"data": {"from": "2024-03-06T19:00Z"}},
        {"error": "no data key"},
    ],
)
def test_a_malformed_payload_raises_malformed(
    uk: UKGrid, uk_api: respx.MockRouter, body: object
) -> None:
    uk_api.get(FORECAST_PATH).respond(json=body)
    with pytest.raises(CarbonMalformed):
        uk.forecast("GB", NOW, 24)


def test_uk_grid_is_a_carbon_provider(uk: UKGrid) -> None:
    assert isinstance(uk, CarbonProvider)
