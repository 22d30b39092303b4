"""`Idempotency-Key` on the create routes, on both stacks."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api_adapter.idempotency import BodyHasher
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import IdempotencyKey
from tests.api_adapter.conftest import LiveApi, stack_env, start_api, stop_api
from tests.api_adapter.helpers import MODEL, chat_body, lines
from tests.utils.services import wait_for

CSV = "text/csv"


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4()}"}


def submit(api: httpx.Client, headers: dict[str, str], content: str = "Hi") -> httpx.Response:
    return api.post("/v1/requests", json={"request_body": chat_body(content)}, headers=headers)


def chat_jsonl(*custom_ids: str) -> bytes:
    rows = [
        {
            "custom_id": cid,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        }
        for cid in custom_ids
    ]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


@pytest.fixture
def oai(live_api: LiveApi, key: str) -> Any:
    with httpx.Client(
        base_url=f"{live_api.base_url}/openai/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as client:
        yield client


def test_a_retried_request_returns_the_first_answer_and_creates_nothing_twice(
    api: httpx.Client,
) -> None:
    headers = new_key()
    first, again = submit(api, headers), submit(api, headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert [r["id"] for r in lines(api.get("/v1/requests"))] == [first.json()["id"]]


def test_the_same_key_with_another_body_is_409_idempotency_key_reused(api: httpx.Client) -> None:
    headers = new_key()
    assert submit(api, headers, "one").status_code == 201
    reused = submit(api, headers, "two")
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert len(lines(api.get("/v1/requests"))) == 1


def test_another_tenants_identical_key_is_independent(live_api: LiveApi, api: httpx.Client) -> None:
    headers = new_key()
    mine = submit(api, headers, "mine")
    with live_api.client(live_api.new_key()) as other:
        theirs = submit(other, headers, "theirs")
        assert theirs.status_code == 201 and theirs.json()["id"] != mine.json()["id"]
        assert [r["id"] for r in lines(other.get("/v1/requests"))] == [theirs.json()["id"]]


def test_without_the_header_every_call_creates(api: httpx.Client) -> None:
    assert submit(api, {}).json()["id"] != submit(api, {}).json()["id"]


def test_a_failed_create_is_not_stored_and_its_retry_runs_again(api: httpx.Client) -> None:
    headers = new_key()
    refused = api.post("/v1/batches", json={"requests_ids": ["0" * 24]}, headers=headers)
    assert refused.status_code == 404
    request_id = submit(api, {}).json()["id"]
    # Another body now (the ids): stored answers only come from successes.
    created = api.post("/v1/batches", json={"requests_ids": [request_id]}, headers=headers)
    assert created.status_code == 201
    again = api.post("/v1/batches", json={"requests_ids": [request_id]}, headers=headers)
    assert again.status_code == 201 and again.json() == created.json()
    assert len(lines(api.get("/v1/batches"))) == 1


def test_concurrent_duplicates_create_once(api: httpx.Client) -> None:
    headers = new_key()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: submit(api, headers), range(16)))
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1, [a.text for a in answers]
    # The others were replayed, or told the first is still being answered.
    for answer in answers:
        if answer.status_code != 201:
            assert (answer.status_code, answer.json()["code"]) == (
                409,
                "idempotency_key_in_progress",
            )
    assert len(lines(api.get("/v1/requests"))) == 1


def test_a_malformed_key_is_refused_naming_the_header(api: httpx.Client) -> None:
    response = submit(api, {"Idempotency-Key": "x" * 256})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_datasets_are_idempotent_over_body_and_query(api: httpx.Client) -> None:
    headers = {**new_key(), "Content-Type": CSV}
    body = b"text\nhello\nworld\n"

    def post(query: str, content: bytes) -> httpx.Response:
        return api.post(f"/v1/datasets?model={MODEL}&{query}", content=content, headers=headers)

    first = post("prompt_column=text", body)
    assert first.status_code == 201, first.text
    assert post("prompt_column=text", body).json() == first.json()
    assert post("prompt_column=text", body + b"again\n").status_code == 409
    assert post("prompt_column=text&max_tokens=5", body).status_code == 409
    assert len(lines(api.get("/v1/batches"))) == 1


def test_openai_files_and_batches_replay_and_refuse_in_openais_shape(oai: httpx.Client) -> None:
    headers = new_key()
    content = chat_jsonl("a", "b")

    def upload(data: bytes) -> httpx.Response:
        # httpx draws a new multipart boundary per request, as SDK retries do.
        return oai.post(
            "/files",
            files={"file": ("in.jsonl", data)},
            data={"purpose": "batch"},
            headers=headers,
        )

    first = upload(content)
    assert first.status_code == 200, first.text
    assert upload(content).json() == first.json()
    assert len(oai.get("/files").json()["data"]) == 1
    reused = upload(chat_jsonl("c"))
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    batch_key = new_key()
    payload = {"input_file_id": first.json()["id"], "endpoint": "/v1/chat/completions"}
    payload["completion_window"] = "24h"
    created = oai.post("/batches", json=payload, headers=batch_key)
    assert created.status_code == 200, created.text
    assert oai.post("/batches", json=payload, headers=batch_key).json() == created.json()
    assert len(oai.get("/batches").json()["data"]) == 1
    other = oai.post("/batches", json={**payload, "metadata": {"a": "b"}}, headers=batch_key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_the_header_is_declared_on_every_create(live_api: LiveApi) -> None:
    paths = httpx.get(f"{live_api.base_url}/openapi.json").json()["paths"]
    creates = ("/v1/requests", "/v1/batches", "/v1/datasets", "/openai/v1/batches")
    for path in (*creates, "/anthropic/v1/messages/batches"):
        names = [p["name"] for p in paths[path]["post"].get("parameters", [])]
        assert "Idempotency-Key" in names, path
    files = [p["name"] for p in paths["/openai/v1/files"]["post"]["parameters"]]
    assert "Idempotency-Key" in files


@pytest.mark.parametrize("size", [1, 3, 7, 64])
def test_body_hash_ignores_the_multipart_boundary_wherever_chunks_split(size: int) -> None:
    def digest(boundary: str, payload: bytes, chunk: int) -> str:
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n'.encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        hasher = BodyHasher(b"", f"multipart/form-data; boundary={boundary}")
        for start in range(0, len(body), chunk):
            hasher.update(body[start : start + chunk])
        return hasher.hexdigest()

    assert digest("aaaa1111", b"payload", size) == digest("bbbbbbbb2222", b"payload", 5)
    assert digest("aaaa1111", b"payload", size) != digest("aaaa1111", b"payloaD", size)


def test_body_hash_covers_the_query_string() -> None:
    one, two = BodyHasher(b"a=1", "text/csv"), BodyHasher(b"a=2", "text/csv")
    one.update(b"x")
    two.update(b"x")
    assert one.hexdigest() != two.hexdigest()


def test_anthropic_batches_replay_and_refuse_in_anthropics_shape(
    live_api: LiveApi, key: str
) -> None:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", **new_key()}
    path = "/anthropic/v1/messages/batches"

    def body(custom_id: str) -> dict[str, Any]:
        params = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
        return {"requests": [{"custom_id": custom_id, "params": params}]}

    with httpx.Client(base_url=live_api.base_url, headers=headers, timeout=30) as client:
        first = client.post(path, json=body("a"))
        assert first.status_code == 200, first.text
        assert client.post(path, json=body("a")).json() == first.json()
        assert len(client.get(path).json()["data"]) == 1
        reused = client.post(path, json=body("b"))
        assert reused.status_code == 409
        assert reused.json()["type"] == "error"
        assert "Idempotency-Key" in reused.json()["error"]["message"]


DATASET = f"/v1/datasets?model={MODEL}&prompt_column=text"
ROWS = b"text\nhello\nworld\n"


def stalled(go: threading.Event) -> Iterator[bytes]:
    """A dataset upload that sends its first bytes, then waits for ``go``."""
    yield ROWS[:5]
    go.wait(60)
    yield ROWS[5:]


def wait_for_claim(db: Database, key: str) -> None:
    query = select(IdempotencyKey.owner).where(IdempotencyKey.idempotency_key == key)

    def claimed() -> bool:
        with db.session() as session:
            return session.execute(query).first() is not None

    wait_for(claimed, "the first upload's claim", timeout=30)


def in_progress_for(response: httpx.Response) -> int:
    """The Retry-After of a 409 idempotency_key_in_progress."""
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "idempotency_key_in_progress"
    return int(response.headers["retry-after"])


def test_a_retry_while_the_first_still_uploads_is_409_in_progress_with_retry_after(
    live_api: LiveApi, api: httpx.Client
) -> None:
    headers = {**new_key(), "Content-Type": CSV}
    go = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(api.post, DATASET, content=stalled(go), headers=headers)
        try:
            wait_for_claim(live_api.db, headers["Idempotency-Key"])
            retry = api.post(DATASET, content=ROWS, headers=headers)
        finally:
            go.set()
        created = first.result(30)
    assert 1 <= in_progress_for(retry) <= 31  # within the default 30 s lease
    assert created.status_code == 201, created.text
    again = api.post(DATASET, content=ROWS, headers=headers)
    assert again.json() == created.json() and again.headers["idempotent-replayed"] == "true"
    assert len(lines(api.get("/v1/batches"))) == 1


LEASE = 3  # seconds: OFFPEAK_IDEMPOTENCY_LEASE_SECONDS of the replicas below


@pytest.mark.parametrize("stack", ["sqlite-local", "postgres-s3"])
def test_a_retry_after_the_replica_was_killed_mid_upload_succeeds_after_the_lease(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = stack_env(stack, tmp_path / "data", request)
    env["OFFPEAK_IDEMPOTENCY_LEASE_SECONDS"] = str(LEASE)
    replica, first_url = start_api(env)
    other = None
    db = Database(env["OFFPEAK_DATABASE_URL"])
    auth = {"X-API-Key": create_key(db, "k", 10.0)[1]}
    headers = {**auth, **new_key(), "Content-Type": CSV}
    try:
        go = threading.Event()
        with (
            httpx.Client(base_url=first_url, timeout=30) as first,
            ThreadPoolExecutor(1) as pool,
        ):
            upload = pool.submit(first.post, DATASET, content=stalled(go), headers=headers)
            try:
                wait_for_claim(db, headers["Idempotency-Key"])
                # Alive and renewing: the key stays held past its first lease.
                time.sleep(LEASE + 2)
                retry = first.post(DATASET, content=ROWS, headers=headers)
                assert in_progress_for(retry) <= LEASE + 1
                replica.send_signal(signal.SIGKILL)  # mid-upload: nothing stored, no release
                replica.wait(10)
            finally:
                go.set()
            with pytest.raises(httpx.TransportError):
                upload.result(30)
        other, other_url = start_api(env)
        with httpx.Client(base_url=other_url, timeout=30) as client:
            started = time.monotonic()
            retry = client.post(DATASET, content=ROWS, headers=headers)
            while retry.status_code == 409:
                time.sleep(in_progress_for(retry))
                retry = client.post(DATASET, content=ROWS, headers=headers)
            assert retry.status_code == 201, retry.text
            assert time.monotonic() - started <= LEASE + 2
            assert [b["id"] for b in lines(client.get("/v1/batches", headers=auth))] == [
                retry.json()["id"]
            ]
    finally:
        for process in (replica, other):
            if process is not None and process.poll() is None:
                stop_api(process)
        db.dispose()
