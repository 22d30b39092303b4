"""The EXXA request routes against a live server."""

from __future__ import annotations

import httpx

from offpeak.ids import is_id
from offpeak.state.models import Request
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, chat_body, error_code, lines, submit
from tests.utils.services import wait_for

STATUS_FIELDS = {"id", "status", "created_at", "expires_at", "in_progress_at", "ended_at"}


def test_create_request_answers_201_with_a_status_object(api: httpx.Client) -> None:
    created = submit(api, metadata={"custom_id": "row-1"})
    assert set(created) == STATUS_FIELDS
    assert is_id(created["id"])
    assert created["status"] == "registered"
    assert created["expires_at"] == created["created_at"] + 86400
    assert created["in_progress_at"] is None and created["ended_at"] is None


def test_get_request_returns_the_full_object(api: httpx.Client) -> None:
    created = submit(api, "What is 2+2?", metadata={"custom_id": "q-7"})
    full = api.get(f"/v1/requests/{created['id']}").json()
    assert full["request_body"]["model"] == MODEL
    assert full["request_body"]["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert full["metadata"] == {"custom_id": "q-7"}
    assert full["batch_id"] is None
    assert full["result_body"] is None and full["error"] is None
    assert full["completion_window"] == "24h" and full["webhook"] is None
    assert api.get(f"/v1/requests/{created['id']}/status").json() == created


def _stored(live_api: LiveApi, request_id: str) -> Request:
    with live_api.db.session() as session:
        row = session.get(Request, request_id)
    assert row is not None
    return row


def test_sealed_request_is_served_from_its_segment(live_api: LiveApi, api: httpx.Client) -> None:
    created = submit(api, "sealed soon")
    wait_for(lambda: _stored(live_api, created["id"]).segment, "sealing", timeout=20)
    row = _stored(live_api, created["id"])
    assert row.body is None
    assert row.segment and row.segment.startswith("requests/date=")
    full = api.get(f"/v1/requests/{created['id']}").json()
    assert full["request_body"]["messages"][0]["content"] == "sealed soon"


def test_list_requests_streams_jsonl_oldest_first(api: httpx.Client) -> None:
    ids = [submit(api, f"prompt {i}")["id"] for i in range(3)]
    response = api.get("/v1/requests")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    listed = lines(response)
    assert [r["id"] for r in listed] == ids
    assert all(set(r) == STATUS_FIELDS for r in listed)
    full = lines(api.get("/v1/requests", params={"full": "true"}))
    assert [r["request_body"]["messages"][0]["content"] for r in full] == [
        "prompt 0",
        "prompt 1",
        "prompt 2",
    ]


def test_list_requests_filters_by_status(api: httpx.Client) -> None:
    first, second = submit(api)["id"], submit(api)["id"]
    api.post(f"/v1/requests/{first}/cancel")
    cancelled = lines(api.get("/v1/requests", params={"status": "cancelled"}))
    registered = lines(api.get("/v1/requests", params={"status": "registered"}))
    assert [r["id"] for r in cancelled] == [first]
    assert [r["id"] for r in registered] == [second]


def test_cancel_request_then_cancel_again_conflicts(api: httpx.Client) -> None:
    created = submit(api)
    cancelled = api.post(f"/v1/requests/{created['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["ended_at"] is not None
    again = api.post(f"/v1/requests/{created['id']}/cancel")
    assert again.status_code == 409
    assert error_code(again) == "request_not_cancellable"
    assert "already cancelled" in again.json()["detail"]


def test_short_completion_window_sets_an_earlier_deadline(api: httpx.Client) -> None:
    created = submit(api, completion_window="10m")
    assert created["expires_at"] == created["created_at"] + 600
    full = api.get(f"/v1/requests/{created['id']}").json()
    assert full["completion_window"] == "10m"


def test_all_openai_sampling_fields_are_accepted(api: httpx.Client) -> None:
    body = chat_body(
        temperature=0.2,
        top_p=0.9,
        n=2,
        max_completion_tokens=64,
        stop=["\n\n"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=True,
        top_logprobs=3,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
    )
    body["messages"] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    response = api.post("/v1/requests", json={"request_body": body})
    assert response.status_code == 201, response.text
    stored = api.get(f"/v1/requests/{response.json()['id']}").json()["request_body"]
    assert stored["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert stored["seed"] == 7 and stored["n"] == 2
