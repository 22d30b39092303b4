"""The EXXA batch routes against a live server."""

from __future__ import annotations

import httpx

from tests.api_adapter.helpers import error_code, lines, submit

BATCH_FIELDS = {
    "id",
    "status",
    "created_at",
    "expires_at",
    "in_progress_at",
    "ended_at",
    "metadata",
}


def _batch(api: httpx.Client, ids: list[str], **extra: object) -> httpx.Response:
    return api.post("/v1/batches", json={"requests_ids": ids, **extra})


def test_create_batch_groups_requests(api: httpx.Client) -> None:
    ids = [submit(api)["id"] for _ in range(3)]
    response = _batch(api, ids, metadata={"batch_name": "MyFirstBatch"})
    assert response.status_code == 201, response.text
    batch = response.json()
    assert set(batch) >= BATCH_FIELDS
    assert isinstance(batch["id"], str) and batch["status"] == "registered"
    assert batch["metadata"] == {"batch_name": "MyFirstBatch"}
    assert batch["request_counts"]["total"] == 3
    assert batch["request_counts"]["registered"] == 3
    for rid in ids:
        assert api.get(f"/v1/requests/{rid}").json()["batch_id"] == batch["id"]


def test_batch_get_status_and_list(api: httpx.Client) -> None:
    batch = _batch(api, [submit(api)["id"]]).json()
    assert api.get(f"/v1/batches/{batch['id']}").json()["id"] == batch["id"]
    status = api.get(f"/v1/batches/{batch['id']}/status").json()
    assert set(status) == BATCH_FIELDS - {"metadata"}
    assert [b["id"] for b in lines(api.get("/v1/batches"))] == [batch["id"]]


def test_batch_of_requests_in_another_batch_conflicts(api: httpx.Client) -> None:
    first, second = submit(api)["id"], submit(api)["id"]
    assert _batch(api, [first]).status_code == 201
    response = _batch(api, [second, first])
    assert response.status_code == 409
    assert error_code(response) == "request_already_in_batch"
    assert first in response.json()["detail"]
    # Nothing half-written: the other request is still free.
    assert api.get(f"/v1/requests/{second}").json()["batch_id"] is None


def test_batch_with_unknown_request_is_404_naming_it(api: httpx.Client) -> None:
    known = submit(api)["id"]
    unknown = "0" * 24
    response = _batch(api, [known, unknown])
    assert response.status_code == 404
    assert error_code(response) == "request_not_found"
    assert unknown in response.json()["detail"]
    assert api.get(f"/v1/requests/{known}").json()["batch_id"] is None
    assert lines(api.get("/v1/batches")) == []


def test_batch_with_empty_or_duplicate_or_malformed_ids_is_422(api: httpx.Client) -> None:
    rid = submit(api)["id"]
    for ids in ([], [rid, rid], ["not-an-id"]):
        response = _batch(api, ids)
        assert response.status_code == 422, ids
        assert error_code(response) == "validation_error"
    assert "duplicate request ids" in str(_batch(api, [rid, rid]).json()["detail"])


def test_cancel_batch_cancels_its_requests(api: httpx.Client) -> None:
    ids = [submit(api)["id"] for _ in range(2)]
    batch = _batch(api, ids).json()
    cancelled = api.post(f"/v1/batches/{batch['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["request_counts"]["cancelled"] == 2
    assert {api.get(f"/v1/requests/{r}/status").json()["status"] for r in ids} == {"cancelled"}
    again = api.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 409
    assert error_code(again) == "batch_not_cancellable"


def test_cancel_one_request_of_a_batch_leaves_the_others(api: httpx.Client) -> None:
    ids = [submit(api)["id"] for _ in range(2)]
    batch = _batch(api, ids).json()
    # The getting-started page cancels a request through the batches route.
    response = api.post(f"/v1/batches/{ids[0]}/cancel")
    assert response.status_code == 200
    assert response.json() == api.get(f"/v1/requests/{ids[0]}/status").json()
    assert response.json()["status"] == "cancelled"
    assert api.get(f"/v1/requests/{ids[1]}/status").json()["status"] == "registered"
    assert api.get(f"/v1/batches/{batch['id']}/status").json()["status"] == "registered"


def test_cancel_of_unknown_id_is_404(api: httpx.Client) -> None:
    response = api.post(f"/v1/batches/{'a' * 24}/cancel")
    assert response.status_code == 404
    assert error_code(response) == "request_not_found"
