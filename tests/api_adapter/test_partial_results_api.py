"""`GET /v1/batches/{id}/results?partial=true`: the lines of the requests already ended,
and how many are not, before the batch's results are published."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from offpeak.client import OffpeakClient
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import error_code, lines, submit
from tests.api_adapter.test_cli_client import offpeak


def test_partial_results_of_a_waiting_then_cancelled_batch(api: httpx.Client) -> None:
    ids = [submit(api, f"q{i}")["id"] for i in range(3)]
    batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
    url = f"/v1/batches/{batch['id']}/results"

    waiting = api.get(url, params={"partial": "true"})
    assert waiting.status_code == 200, waiting.text
    assert waiting.text == "" and waiting.headers["x-offpeak-pending"] == "3"
    assert api.get(url).status_code == 409  # without partial: as before

    assert api.post(f"/v1/batches/{batch['id']}/cancel").status_code == 200
    cancelled = api.get(url, params={"partial": "true"})
    assert cancelled.headers["x-offpeak-pending"] == "0"
    got = lines(cancelled)
    assert [line["id"] for line in got] == sorted(ids)
    assert {line["status"] for line in got} == {"cancelled"}
    assert got == [without_progress(api.get(f"/v1/requests/{rid}").json()) for rid in sorted(ids)]


def without_progress(request: dict[str, object]) -> dict[str, object]:
    """A request as GET /v1/requests/{id} shows it, less the plan's expected times, which
    a results line (the request object) does not carry."""
    return {
        k: v for k, v in request.items() if k not in ("expected_start_at", "expected_completion_at")
    }


def test_partial_results_come_as_jsonl_only(api: httpx.Client) -> None:
    batch = api.post("/v1/batches", json={"requests_ids": [submit(api)["id"]]}).json()
    response = api.get(
        f"/v1/batches/{batch['id']}/results", params={"partial": "true", "format": "parquet"}
    )
    assert response.status_code == 422
    assert error_code(response) == "partial_results_jsonl_only"


def test_the_client_and_the_cli_read_partial_results(
    live_api: LiveApi, key: str, api: httpx.Client, tmp_path: Path
) -> None:
    ids = [submit(api, f"q{i}")["id"] for i in range(2)]
    batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
    with OffpeakClient(live_api.base_url, key) as client:
        assert list(client.results(batch["id"], partial=True)) == []
        api.post(f"/v1/requests/{ids[0]}/cancel")
        [line] = client.results(batch["id"], partial=True)
        assert (line.id, line.status) == (ids[0], "cancelled")
    out = tmp_path / "partial.jsonl"
    offpeak(live_api.base_url, key, "results", batch["id"], "--partial", "-o", str(out))
    assert [json.loads(text)["id"] for text in out.read_text().splitlines()] == [ids[0]]
    offpeak(live_api.base_url, key, "results", batch["id"], "-o", str(out), ok=False)
