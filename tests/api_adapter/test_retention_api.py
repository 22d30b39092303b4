"""Once retention has run, the routes that served deleted bytes answer `410
result_expired`, each in its API's dialect; what has not expired still answers, and a
request keeps its status and metadata. The clock moves by the time given to the
collector; the live API on each stack serves what it left."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from offpeak.clock import now
from offpeak.config import load_settings
from offpeak.publish.exxa_jsonl import publish_batch
from offpeak.retention import Collected, collect
from offpeak.state.batches import get_batch
from offpeak.state.models import Batch, Request
from offpeak.storage import ObjectStore, open_store
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, lines, submit

RETENTION = 30 * 86400
HOUR = 3600
OPENAI = "/openai/v1"
CHAT = "/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages/batches"


@pytest.fixture
def store(live_api: LiveApi) -> ObjectStore:
    """The live API's object store, opened from its settings."""
    overrides = {name.removeprefix("OFFPEAK_").lower(): v for name, v in live_api.env.items()}
    return open_store(load_settings(**overrides))


@pytest.fixture
def api(live_api: LiveApi, key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {key}", "x-api-key": key}
    headers["anthropic-version"] = "2023-06-01"
    with httpx.Client(base_url=live_api.base_url, headers=headers, timeout=30) as client:
        yield client


def _gc(live_api: LiveApi, store: ObjectStore, after: int) -> Collected:
    """A run of the collector ``after`` seconds from now. Only what the tests gave an
    hour or two to live expires: the shared live database keeps everything else."""
    return collect(live_api.db, store, RETENTION, now() + after)


def _line(custom_id: str) -> dict[str, Any]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def _upload(api: httpx.Client, data: dict[str, str]) -> dict[str, Any]:
    content = b"".join(httpx.Request("GET", "/", json=_line(c)).content + b"\n" for c in "ab")
    response = api.post(
        f"{OPENAI}/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch", **data}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_openai_files_past_their_expiry_are_410_and_the_others_stay(
    live_api: LiveApi, store: ObjectStore, api: httpx.Client
) -> None:
    short = _upload(api, {"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"})
    assert short["expires_at"] == short["created_at"] + HOUR
    kept = _upload(api, {})
    assert kept["expires_at"] is None
    create = {
        "input_file_id": kept["id"],
        "endpoint": CHAT,
        "completion_window": "24h",
        "output_expires_after": {"anchor": "created_at", "seconds": 2 * HOUR},
    }
    batch = api.post(f"{OPENAI}/batches", json=create).json()
    api.post(f"{OPENAI}/batches/{batch['id']}/cancel")
    ended = api.get(f"{OPENAI}/batches/{batch['id']}").json()
    error_file = ended["error_file_id"]
    assert ended["status"] == "cancelled" and error_file
    assert api.get(f"{OPENAI}/files/{error_file}/content").status_code == 200

    _gc(live_api, store, HOUR + 60)  # the short file only
    gone = api.get(f"{OPENAI}/files/{short['id']}/content")
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "result_expired"
    assert api.get(f"{OPENAI}/files/{short['id']}").json() == short  # the row stays
    again = {**create, "input_file_id": short["id"]}
    assert api.post(f"{OPENAI}/batches", json=again).json()["error"]["code"] == "result_expired"
    assert api.get(f"{OPENAI}/files/{error_file}/content").status_code == 200

    _gc(live_api, store, 2 * HOUR + 60)  # the batch's own retention: its error file
    assert api.get(f"{OPENAI}/files/{error_file}/content").status_code == 410
    assert api.get(f"{OPENAI}/files/{kept['id']}/content").status_code == 200  # 30 days
    requests = lines(api.get("/v1/requests", params={"batch_id": batch["id"], "full": True}))
    assert [r["status"] for r in requests] == ["cancelled", "cancelled"]
    assert [r["metadata"]["custom_id"] for r in requests] == ["a", "b"]
    assert all(r["request_body"] is None for r in requests)


def test_an_out_of_range_expiry_is_refused(api: httpx.Client) -> None:
    content = httpx.Request("GET", "/", json=_line("a")).content + b"\n"
    for data in (
        {"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
        {"expires_after[seconds]": "3600"},
    ):
        response = api.post(
            f"{OPENAI}/files",
            files={"file": ("in.jsonl", content)},
            data={"purpose": "batch", **data},
        )
        assert response.status_code == 400, response.text
    create = {"input_file_id": "file-x", "endpoint": CHAT, "completion_window": "24h"}
    too_long = {**create, "output_expires_after": {"anchor": "created_at", "seconds": 31 * 86400}}
    refused = api.post(f"{OPENAI}/batches", json=too_long)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "output_expires_after.seconds"


def test_exxa_results_past_retention_are_410_and_the_requests_keep_their_status(
    live_api: LiveApi, store: ObjectStore, api: httpx.Client
) -> None:
    ids = [submit(api, f"r {i}", metadata={"n": str(i)})["id"] for i in range(2)]
    batch_id = api.post("/v1/batches", json={"requests_ids": ids}).json()["id"]
    db = live_api.db
    with db.session(write=True) as session:  # failed by hand, as if run
        session.execute(
            update(Request)
            .where(Request.id.in_(ids))
            .values(status="failed", error_code="expired", ended_at=now())
        )
    publish_batch(db, store, get_batch(db, _key_id(live_api, ids[0]), batch_id))
    assert api.get(f"/v1/batches/{batch_id}/results").status_code == 200
    with db.session(write=True) as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(retention_seconds=HOUR))

    _gc(live_api, store, HOUR + 60)

    for fmt in ("jsonl", "parquet"):
        gone = api.get(f"/v1/batches/{batch_id}/results", params={"format": fmt})
        assert (gone.status_code, gone.json()["code"]) == (410, "result_expired")
    one = api.get(f"/v1/requests/{ids[0]}").json()
    assert one["status"] == "failed" and one["metadata"] == {"n": "0"}
    assert one["request_body"] is None and one["error"]["code"] == "expired"
    assert api.get(f"/v1/batches/{batch_id}").json()["status"] == "failed"


def _key_id(live_api: LiveApi, request_id: str) -> str:
    with live_api.db.session() as session:
        row = session.get(Request, request_id)
        assert row is not None
        return row.key_id


def test_anthropic_results_past_retention_are_410(
    live_api: LiveApi, store: ObjectStore, api: httpx.Client
) -> None:
    entry = {
        "custom_id": "r0",
        "params": {
            "model": MODEL,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    }
    batch = api.post(ANTHROPIC, json={"requests": [entry]}).json()
    cancelled = api.post(f"{ANTHROPIC}/{batch['id']}/cancel").json()
    assert api.get(cancelled["results_url"]).status_code == 200
    with live_api.db.session(write=True) as session:
        session.execute(update(Batch).where(Batch.id == batch["id"]).values(retention_seconds=HOUR))

    _gc(live_api, store, HOUR + 60)

    gone = api.get(f"{ANTHROPIC}/{batch['id']}/results")
    assert gone.status_code == 410, gone.text
    assert gone.json()["type"] == "error" and "expired" in gone.json()["error"]["message"]
    assert api.get(f"{ANTHROPIC}/{batch['id']}").json()["processing_status"] == "ended"
