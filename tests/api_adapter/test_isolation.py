"""Every object of one API key is invisible to another: 404, never 403."""

from __future__ import annotations

import httpx

from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import error_code, lines, submit


def test_another_key_gets_404_for_every_object(live_api: LiveApi, api: httpx.Client) -> None:
    rid = submit(api)["id"]
    other_rid = submit(api)["id"]
    bid = api.post("/v1/batches", json={"requests_ids": [rid]}).json()["id"]
    with live_api.client(live_api.new_key(name="intruder")) as intruder:
        for path in (
            f"/v1/requests/{rid}",
            f"/v1/requests/{rid}/status",
            f"/v1/batches/{bid}",
            f"/v1/batches/{bid}/status",
        ):
            assert intruder.get(path).status_code == 404, path
        for path in (
            f"/v1/requests/{rid}/cancel",
            f"/v1/batches/{bid}/cancel",
            f"/v1/batches/{rid}/cancel",
        ):
            assert intruder.post(path).status_code == 404, path
        response = intruder.post("/v1/batches", json={"requests_ids": [other_rid]})
        assert response.status_code == 404
        assert error_code(response) == "request_not_found"
        assert lines(intruder.get("/v1/requests")) == []
        assert lines(intruder.get("/v1/requests", params={"full": "true"})) == []
        assert lines(intruder.get("/v1/batches")) == []
    # The owner's objects are untouched by the intruder's attempts.
    assert api.get(f"/v1/requests/{rid}/status").json()["status"] == "registered"
    assert api.get(f"/v1/requests/{other_rid}").json()["batch_id"] is None
    assert api.get(f"/v1/batches/{bid}/status").json()["status"] == "registered"
