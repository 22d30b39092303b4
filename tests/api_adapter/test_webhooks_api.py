"""Webhooks through the API: URLs to non-public addresses refused at submission (422),
and `GET /v1/webhooks/deliveries` listing the key's attempts. Only literal addresses
are submitted: no name is looked up, no packet leaves this machine."""

from __future__ import annotations

import httpx
import pytest

from offpeak.events.delivery import Policy, deliver_pending
from offpeak.events.guard import Guard
from offpeak.state.keys import authenticate
from offpeak.state.requests import insert_requests, new_request_row
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import chat_body, error_code, submit
from tests.offpeak.events.conftest import Net
from tests.utils.factories import request_create
from tests.utils.webhook_receiver import webhook_receiver

REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "https://192.168.1.1:8443/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_create_request_refuses_a_private_webhook(api: httpx.Client, url: str) -> None:
    response = api.post("/v1/requests", json={"request_body": chat_body(), "webhook": url})
    assert response.status_code == 422, response.text
    assert error_code(response) == "webhook_url_forbidden"


@pytest.mark.parametrize("url", REFUSED)
def test_create_batch_refuses_a_private_webhook(api: httpx.Client, url: str) -> None:
    request = submit(api)
    response = api.post("/v1/batches", json={"requests_ids": [request["id"]], "webhook": url})
    assert response.status_code == 422, response.text
    assert error_code(response) == "webhook_url_forbidden"
    assert api.get(f"/v1/requests/{request['id']}").json()["batch_id"] is None


def test_deliveries_lists_the_keys_attempts(live_api: LiveApi, api: httpx.Client) -> None:
    key = authenticate(live_api.db, api.headers["X-API-Key"])
    with webhook_receiver() as receiver:
        # Stored through the core: this API refuses loopback URLs, as it should.
        row = new_request_row(key.id, request_create("hi", webhook=receiver.url()), 0)
        insert_requests(live_api.db, [row])
        assert api.post(f"/v1/requests/{row['id']}/cancel").status_code == 200
        receiver.answer("/hook", 503)
        guard: Guard = Net(loopback_ok=True).guard(allow_private=True)
        policy = Policy(timeout=2, base=0.001, cap=0.001)
        assert deliver_pending(live_api.db, guard, policy).retried == 1
        [sent] = receiver.received

    listed = api.get("/v1/webhooks/deliveries")
    assert listed.status_code == 200, listed.text
    [attempt] = listed.json()["data"]
    assert attempt["event_id"] == sent.headers["webhook-id"]
    assert (attempt["type"], attempt["object_id"]) == ("request.cancelled", row["id"])
    assert (attempt["status_code"], attempt["outcome"], attempt["event_status"]) == (
        503,
        "retry",
        "pending",
    )
    other = live_api.client(live_api.new_key())
    assert other.get("/v1/webhooks/deliveries").json()["data"] == []
    assert other.get("/v1/webhooks/deliveries", params={"limit": 0}).status_code == 422
