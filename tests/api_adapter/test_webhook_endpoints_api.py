"""`/v1/webhooks/endpoints` and `offpeak webhooks add|list|remove` over the live API:
a URL the SSRF guard refuses is a precise 422 at registration. Only literal addresses
are registered: no name is looked up, and nothing is sent to them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import error_code
from tests.api_adapter.test_cli_client import offpeak

PUBLIC = "https://93.184.215.14/hooks/offpeak"  # registered, never called


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1/hook", "webhook_url_forbidden"),
        ("http://10.0.0.1/hook", "webhook_url_forbidden"),
        ("http://169.254.169.254/latest/meta-data/", "webhook_url_forbidden"),
        ("http://[::1]/hook", "webhook_url_forbidden"),
        ("http://93.184.215.14/hook", "webhook_url_insecure"),
        ("not a url", "webhook_url_invalid"),
    ],
)
def test_registering_a_refused_url_is_a_422_with_its_code(
    api: httpx.Client, url: str, code: str
) -> None:
    response = api.post("/v1/webhooks/endpoints", json={"url": url})
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    assert api.get("/v1/webhooks/endpoints").json()["data"] == []


def test_endpoints_are_registered_listed_and_removed_per_key(
    live_api: LiveApi, api: httpx.Client
) -> None:
    created = api.post("/v1/webhooks/endpoints", json={"url": PUBLIC, "description": "ops"})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert (endpoint["object"], endpoint["url"], endpoint["description"]) == (
        "webhook_endpoint",
        PUBLIC,
        "ops",
    )
    again = api.post("/v1/webhooks/endpoints", json={"url": PUBLIC})
    assert (again.status_code, error_code(again)) == (409, "webhook_endpoint_exists")
    assert [e["id"] for e in api.get("/v1/webhooks/endpoints").json()["data"]] == [endpoint["id"]]

    other = live_api.client(live_api.new_key())
    assert other.get("/v1/webhooks/endpoints").json()["data"] == []
    foreign = other.delete(f"/v1/webhooks/endpoints/{endpoint['id']}")
    assert (foreign.status_code, error_code(foreign)) == (404, "webhook_endpoint_not_found")

    removed = api.delete(f"/v1/webhooks/endpoints/{endpoint['id']}")
    assert removed.json() == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
    assert api.get("/v1/webhooks/endpoints").json()["data"] == []


def test_unknown_fields_are_refused(api: httpx.Client) -> None:
    response = api.post("/v1/webhooks/endpoints", json={"url": PUBLIC, "events": ["x"]})
    assert response.status_code == 422, response.text


@pytest.mark.live
def test_the_cli_adds_lists_and_removes_endpoints(live_api: LiveApi, key: str) -> None:
    added = offpeak(live_api.base_url, key, "webhooks", "add", PUBLIC, "--description", "ops")
    endpoint_id = added.stdout.strip()
    listed = offpeak(live_api.base_url, key, "webhooks", "list", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in listed] == [endpoint_id]
    assert PUBLIC in offpeak(live_api.base_url, key, "webhooks", "list").stdout
    refused = offpeak(
        live_api.base_url, key, "webhooks", "add", "http://10.0.0.1/x", ok=False
    ).stderr
    assert "private" in refused and "Traceback" not in refused
    offpeak(live_api.base_url, key, "webhooks", "remove", endpoint_id)
    assert offpeak(live_api.base_url, key, "webhooks", "list").stdout == ""
