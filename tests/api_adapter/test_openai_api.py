"""The OpenAI Batch API surface under /openai/v1: files, batch creation and its input
checks, listing, cancelling, isolation (no inference: the live API alone)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_adapter.conftest import OPENAI_MAX_BATCH_LINES, OPENAI_MAX_FILE_BYTES, LiveApi
from tests.api_adapter.helpers import MODEL, lines

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
EMBED_MODEL = "all-minilm-l6-v2"


def chat_line(custom_id: str, content: str = "Hi", **body: Any) -> dict[str, Any]:
    fields = {"model": MODEL, "messages": [{"role": "user", "content": content}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": fields}


def jsonl(items: list[Any]) -> bytes:
    return b"".join(
        (item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in items
    )


@pytest.fixture
def oai(live_api: LiveApi, key: str) -> Iterator[httpx.Client]:
    """A client sending its key as the OpenAI SDK does: `Authorization: Bearer`."""
    with httpx.Client(
        base_url=f"{live_api.base_url}/openai/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as client:
        yield client


def upload(client: httpx.Client, content: bytes, name: str = "input.jsonl") -> dict[str, Any]:
    response = client.post("/files", files={"file": (name, content)}, data={"purpose": "batch"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def create(client: httpx.Client, content: bytes, endpoint: str = CHAT, **extra: Any) -> Any:
    file_id = upload(client, content)["id"]
    payload = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}
    return client.post("/batches", json={**payload, **extra})


def error_of(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


def test_upload_read_list_download_and_delete_a_file(oai: httpx.Client) -> None:
    content = jsonl([chat_line("a"), chat_line("b")])
    created = upload(oai, content, "mine.jsonl")
    assert created["object"] == "file" and created["purpose"] == "batch"
    assert (created["bytes"], created["filename"]) == (len(content), "mine.jsonl")
    assert oai.get(f"/files/{created['id']}").json() == created
    assert oai.get(f"/files/{created['id']}/content").content == content
    second = upload(oai, content)
    listed = oai.get("/files").json()
    assert [f["id"] for f in listed["data"]] == [second["id"], created["id"]]
    page = oai.get("/files", params={"limit": 1}).json()
    assert (page["data"][0]["id"], page["has_more"]) == (second["id"], True)
    rest = oai.get("/files", params={"limit": 1, "after": page["last_id"]}).json()
    assert ([f["id"] for f in rest["data"]], rest["has_more"]) == ([created["id"]], False)
    deleted = oai.delete(f"/files/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "file", "deleted": True}
    assert error_of(oai.get(f"/files/{created['id']}"), 404)["code"] == "file_not_found"
    assert oai.get(f"/files/{created['id']}/content").status_code == 404


def test_both_key_headers_work_and_a_missing_key_gets_an_openai_401(
    live_api: LiveApi, key: str
) -> None:
    base = f"{live_api.base_url}/openai/v1"
    assert httpx.get(f"{base}/files", headers={"X-API-Key": key}).status_code == 200
    error = error_of(httpx.get(f"{base}/batches"), 401)
    assert error["type"] == "authentication_error"
    wrong = httpx.get(f"{base}/batches", headers={"Authorization": "Bearer nope"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key"
    # And the EXXA routes take the bearer token too.
    exxa = httpx.get(f"{live_api.base_url}/v1/batches", headers={"Authorization": f"Bearer {key}"})
    assert exxa.status_code == 200


def test_uploads_are_refused_when_not_a_batch_file(oai: httpx.Client) -> None:
    wrong_purpose = oai.post(
        "/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "assistants"}
    )
    assert error_of(wrong_purpose)["code"] == "invalid_purpose"
    no_purpose = oai.post("/files", files={"file": ("a.jsonl", b"{}\n")})
    assert error_of(no_purpose)["param"] == "purpose"
    empty = oai.post("/files", files={"file": ("a.jsonl", b"")}, data={"purpose": "batch"})
    assert error_of(empty)["code"] == "empty_file"
    as_json = oai.post("/files", json={"purpose": "batch"})
    assert error_of(as_json, 415)["code"] == "unsupported_media_type"


def test_a_file_over_the_limit_gets_a_413_naming_the_limit(oai: httpx.Client) -> None:
    # Just over: passes the early check (room for the multipart framing), then refused.
    just_over = oai.post(
        "/files",
        files={"file": ("big.jsonl", b"x" * (OPENAI_MAX_FILE_BYTES + 1))},
        data={"purpose": "batch"},
    )
    error = error_of(just_over, 413)
    assert f"at most {OPENAI_MAX_FILE_BYTES} bytes" in error["message"]
    far_over = oai.post(
        "/files",
        files={"file": ("big.jsonl", b"x" * (2 * OPENAI_MAX_FILE_BYTES))},
        data={"purpose": "batch"},
    )
    assert error_of(far_over, 413)["code"] == "payload_too_large"


TOO_MANY = [chat_line(f"r{i}") for i in range(OPENAI_MAX_BATCH_LINES + 1)]
BAD_FILES: dict[str, tuple[list[Any], str, str, int, str]] = {
    # name: (lines, endpoint, expected code, line, words in the message)
    "malformed json": ([chat_line("a"), b'{"custom_id": "b", '], CHAT, "invalid_json_line", 2, ""),
    "not an object": ([chat_line("a"), [1, 2]], CHAT, "invalid_line", 2, ""),
    "no custom_id": (
        [{k: v for k, v in chat_line("a").items() if k != "custom_id"}],
        CHAT,
        "invalid_line",
        1,
        "custom_id",
    ),
    "duplicate custom_id": (
        [chat_line("a"), chat_line("b"), chat_line("a")],
        CHAT,
        "duplicate_custom_id",
        3,
        "line 1",
    ),
    "url not the endpoint": (
        [chat_line("a"), {**chat_line("b"), "url": EMBED}],
        CHAT,
        "mismatched_url",
        2,
        EMBED,
    ),
    "two models": (
        [chat_line("a"), chat_line("b", model="tiny-chat")],
        CHAT,
        "mismatched_model",
        2,
        "one model",
    ),
    "unknown model": ([chat_line("a", model="gpt-9")], CHAT, "model_not_found", 1, "gpt-9"),
    "invalid body": (
        [chat_line("a"), {**chat_line("b"), "body": {"model": MODEL}}],
        CHAT,
        "invalid_body",
        2,
        "body.messages",
    ),
    "max_tokens over the model's": (
        [chat_line("a", model="tiny-chat", max_tokens=10_000)],
        CHAT,
        "invalid_body",
        1,
        "max_tokens",
    ),
    "embedding model at chat": (
        [chat_line("a", model=EMBED_MODEL)],
        CHAT,
        "model_endpoint_mismatch",
        1,
        EMBED,
    ),
    "chat model at embeddings": (
        [
            {
                "custom_id": "a",
                "method": "POST",
                "url": EMBED,
                "body": {"model": MODEL, "input": "x"},
            }
        ],
        EMBED,
        "model_endpoint_mismatch",
        1,
        CHAT,
    ),
    "only blank lines": ([b"", b"  "], CHAT, "empty_file", 0, ""),
    "too many lines": (TOO_MANY, CHAT, "too_many_lines", OPENAI_MAX_BATCH_LINES + 1, "split"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_an_invalid_input_file_is_refused_at_create_with_its_line(
    oai: httpx.Client, live_api: LiveApi, key: str, case: str
) -> None:
    items, endpoint, code, line, words = BAD_FILES[case]
    error = error_of(create(oai, jsonl(items), endpoint))
    assert (error["code"], error["param"]) == (code, "input_file_id")
    assert error["line"] == (line or None)
    if line:
        assert f"line {line}: " in error["message"]
    assert words in error["message"]
    assert error["errors"][0]["code"] == code
    # Nothing was created: no batch, no request.
    assert oai.get("/batches").json()["data"] == []
    with live_api.client(key) as api:
        assert lines(api.get("/v1/requests")) == []


def test_every_problem_of_a_file_is_listed(oai: httpx.Client) -> None:
    items = [chat_line("a"), b"oops", chat_line("a"), {**chat_line("c"), "url": EMBED}]
    error = error_of(create(oai, jsonl(items)))
    listed = [(e["code"], e["line"]) for e in error["errors"]]
    assert listed == [("invalid_json_line", 2), ("duplicate_custom_id", 3), ("mismatched_url", 4)]


def test_bad_create_calls_get_a_precise_400_or_404(oai: httpx.Client) -> None:
    file_id = upload(oai, jsonl([chat_line("a")]))["id"]
    base = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    endpoint = error_of(oai.post("/batches", json={**base, "endpoint": "/v1/completions"}))
    assert endpoint["param"] == "endpoint" and "not supported" in endpoint["message"]
    window = error_of(oai.post("/batches", json={**base, "completion_window": "2w"}))
    assert window["param"] == "completion_window"
    metadata = error_of(oai.post("/batches", json={**base, "metadata": {"k": 1}}))
    assert metadata["param"].startswith("metadata")
    missing = error_of(oai.post("/batches", json={**base, "input_file_id": "0" * 24}), 404)
    assert missing["code"] == "file_not_found"


def test_a_batch_is_one_of_our_batches_with_its_custom_ids_in_order(
    oai: httpx.Client, live_api: LiveApi, key: str
) -> None:
    ids = [f"line-{i}" for i in range(12)]
    response = create(
        oai, jsonl([chat_line(c, max_tokens=4) for c in ids]), metadata={"project": "x"}
    )
    assert response.status_code == 200, response.text
    batch = response.json()
    assert batch["object"] == "batch" and batch["status"] == "in_progress"
    assert (batch["endpoint"], batch["model"], batch["completion_window"]) == (CHAT, MODEL, "24h")
    assert batch["request_counts"] == {"total": 12, "completed": 0, "failed": 0}
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    assert batch["metadata"] == {"project": "x"}
    assert batch["expires_at"] == batch["created_at"] + 24 * 3600
    assert oai.get(f"/batches/{batch['id']}").json() == batch
    with live_api.client(key) as api:
        exxa = api.get(f"/v1/batches/{batch['id']}").json()
        assert exxa["request_counts"]["total"] == 12 and exxa["metadata"] == {"project": "x"}
        requests = lines(api.get("/v1/requests", params={"batch_id": batch["id"], "full": True}))
    assert [r["metadata"]["custom_id"] for r in requests] == ids
    assert requests[0]["request_body"]["max_tokens"] == 4


def test_list_batches_newest_first_with_pagination(oai: httpx.Client) -> None:
    made = [create(oai, jsonl([chat_line("a")])).json()["id"] for _ in range(3)]
    first = oai.get("/batches", params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [b["id"] for b in first["data"]] == made[::-1][:2]
    assert (first["first_id"], first["last_id"]) == (made[2], made[1])
    rest = oai.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()
    assert ([b["id"] for b in rest["data"]], rest["has_more"]) == ([made[0]], False)
    assert error_of(oai.get("/batches", params={"limit": 101}))["param"] == "limit"


def test_cancel_moves_through_cancelling_to_cancelled_with_an_error_file(
    oai: httpx.Client,
) -> None:
    ids = ["x", "y", "z"]
    batch = create(oai, jsonl([chat_line(c) for c in ids])).json()
    cancelling = oai.post(f"/batches/{batch['id']}/cancel").json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    done = oai.get(f"/batches/{batch['id']}").json()
    assert done["status"] == "cancelled" and done["cancelled_at"] is not None
    assert done["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    assert done["output_file_id"] is None  # nothing finished: null, never ""
    errors = lines(oai.get(f"/files/{done['error_file_id']}/content"))
    assert [e["custom_id"] for e in errors] == ids
    for line in errors:
        assert line["id"].startswith("batch_req_") and line["response"] is None
        assert line["error"]["code"] == "batch_cancelled"
    error_file = oai.get(f"/files/{done['error_file_id']}").json()
    assert error_file["purpose"] == "batch_output"
    again = {"input_file_id": error_file["id"], "endpoint": CHAT, "completion_window": "24h"}
    assert error_of(oai.post("/batches", json=again))["code"] == "invalid_input_file"
    assert oai.post(f"/batches/{batch['id']}/cancel").json()["status"] == "cancelled"


def test_another_key_sees_none_of_it(oai: httpx.Client, live_api: LiveApi) -> None:
    file_id = upload(oai, jsonl([chat_line("a")]))["id"]
    batch = create(oai, jsonl([chat_line("a")])).json()
    with httpx.Client(
        base_url=f"{live_api.base_url}/openai/v1",
        headers={"Authorization": f"Bearer {live_api.new_key()}"},
    ) as other:
        for path in (f"/files/{file_id}", f"/files/{file_id}/content", f"/batches/{batch['id']}"):
            assert other.get(path).status_code == 404, path
        assert other.delete(f"/files/{file_id}").status_code == 404
        assert other.post(f"/batches/{batch['id']}/cancel").status_code == 404
        assert other.get("/files").json()["data"] == []
        assert other.get("/batches").json()["data"] == []
        stolen = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
        assert other.post("/batches", json=stolen).status_code == 404
    assert oai.get(f"/batches/{batch['id']}").json()["status"] == "in_progress"
