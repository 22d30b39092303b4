"""Anthropic's Message Batches API under /anthropic/v1: creation and its checks, the
batch object, listing, cancelling, results, deletion, headers and isolation (no
inference: the live API alone; the SDK runs it end to end in tests/e2e)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_adapter.conftest import ANTHROPIC_MAX_BATCH_BYTES, MAX_BODY_BYTES, LiveApi
from tests.api_adapter.helpers import MODEL, lines, submit

PATH = "/anthropic/v1/messages/batches"
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def ant(live_api: LiveApi, key: str) -> Iterator[httpx.Client]:
    """A client sending its key and version as the Anthropic SDK does."""
    with httpx.Client(
        base_url=live_api.base_url, headers={"x-api-key": key, **VERSION}, timeout=30
    ) as client:
        yield client


def entry(custom_id: str = "r0", content: Any = "Hi", **params: Any) -> dict[str, Any]:
    fields = {
        "model": MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": content}],
        **params,
    }
    return {"custom_id": custom_id, "params": fields}


def create(client: httpx.Client, *entries: dict[str, Any]) -> dict[str, Any]:
    response = client.post(PATH, json={"requests": list(entries or [entry()])})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error(response: httpx.Response, status: int, kind: str) -> str:
    """The message of an Anthropic-shaped error of this status and type."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    message: str = body["error"]["message"]
    return message


def test_create_answers_a_message_batch_in_progress(ant: httpx.Client) -> None:
    batch = create(ant, entry("a"), entry("b"))
    assert batch["type"] == "message_batch" and batch["processing_status"] == "in_progress"
    assert batch["request_counts"] == {
        "processing": 2,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert batch["created_at"].endswith("Z") and batch["expires_at"].endswith("Z")
    assert batch["ended_at"] is None and batch["cancel_initiated_at"] is None
    assert batch["archived_at"] is None and batch["results_url"] is None
    assert ant.get(f"{PATH}/{batch['id']}").json() == batch


def test_entries_become_engine_requests_the_exxa_routes_see(ant: httpx.Client) -> None:
    params = {
        "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        "stop_sequences": ["\n\n", "END"],
        "top_k": 5,
        "top_p": 0.5,
        "metadata": {"user_id": "u-7"},
    }
    content = [{"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}]
    batch = create(
        ant,
        entry("first", content, **params),
        entry("second", "Again", temperature=0.2),
    )
    seen = ant.get(f"/v1/batches/{batch['id']}").json()
    assert seen["request_counts"]["total"] == 2
    # The key's only requests, oldest first: the entries in order.
    mine = [ant.get(f"/v1/requests/{r['id']}").json() for r in lines(ant.get("/v1/requests"))]
    assert [r["batch_id"] for r in mine] == [batch["id"]] * 2
    assert [r["metadata"] for r in mine] == [{"custom_id": "first"}, {"custom_id": "second"}]
    first, second = (r["request_body"] for r in mine)
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
    ]
    assert (first["model"], first["max_tokens"], first["stop"]) == (MODEL, 16, ["\n\n", "END"])
    assert (first["temperature"], first["top_k"], first["top_p"]) == (1.0, 5, 0.5)
    assert first["user"] == "u-7"
    assert second["temperature"] == 0.2 and "top_k" not in second


def test_cancel_ends_a_batch_and_its_results_are_canceled_lines(ant: httpx.Client) -> None:
    batch = create(ant, entry("a"), entry("b"))
    refused = ant.get(f"{PATH}/{batch['id']}/results")
    assert error(refused, 409, "invalid_request_error") == (
        f"message batch {batch['id']} is in_progress; its results are available once it has ended"
    )
    assert error(ant.delete(f"{PATH}/{batch['id']}"), 409, "invalid_request_error") == (
        f"message batch {batch['id']} has not ended; cancel it and wait for it to end "
        "before deleting it"
    )
    cancelled = ant.post(f"{PATH}/{batch['id']}/cancel").json()
    # Nothing of it was running: it has ended at once.
    assert cancelled["processing_status"] == "ended"
    assert cancelled["request_counts"]["canceled"] == 2
    assert cancelled["request_counts"]["processing"] == 0
    assert cancelled["cancel_initiated_at"] is not None and cancelled["ended_at"] is not None
    assert cancelled["results_url"] == f"{ant.base_url}{PATH}/{batch['id']}/results"
    assert ant.post(f"{PATH}/{batch['id']}/cancel").json() == cancelled  # again: the same
    results = ant.get(cancelled["results_url"])
    assert results.status_code == 200
    assert lines(results) == [
        {"custom_id": "a", "result": {"type": "canceled"}},
        {"custom_id": "b", "result": {"type": "canceled"}},
    ]
    assert ant.get(f"/v1/batches/{batch['id']}").json()["status"] == "cancelled"
    deleted = ant.delete(f"{PATH}/{batch['id']}")
    assert deleted.json() == {"id": batch["id"], "type": "message_batch_deleted"}
    assert error(ant.get(f"{PATH}/{batch['id']}"), 404, "not_found_error") == (
        f"message batch {batch['id']} not found"
    )
    assert ant.get(f"/v1/batches/{batch['id']}").status_code == 404  # gone everywhere


def test_list_pages_newest_first_both_ways(ant: httpx.Client) -> None:
    made = [create(ant, entry(f"r{i}"))["id"] for i in range(3)]
    newest = made[::-1]
    every = ant.get(PATH).json()
    assert [b["id"] for b in every["data"]] == newest and not every["has_more"]
    assert (every["first_id"], every["last_id"]) == (newest[0], newest[-1])
    page = ant.get(PATH, params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == newest[:2] and page["has_more"]
    rest = ant.get(PATH, params={"limit": 2, "after_id": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == newest[2:] and not rest["has_more"]
    back = ant.get(PATH, params={"limit": 1, "before_id": newest[2]}).json()
    assert [b["id"] for b in back["data"]] == [newest[1]] and back["has_more"]
    top = ant.get(PATH, params={"limit": 5, "before_id": newest[1]}).json()
    assert [b["id"] for b in top["data"]] == [newest[0]] and not top["has_more"]
    assert error(ant.get(PATH, params={"limit": 1001}), 400, "invalid_request_error") == (
        "limit: Input should be less than or equal to 1000"
    )
    # A batch made through the EXXA API is not a message batch.
    exxa = ant.post("/v1/batches", json={"requests_ids": [submit(ant)["id"]]})
    assert exxa.status_code == 201, exxa.text
    assert [b["id"] for b in ant.get(PATH).json()["data"]] == newest
    error(ant.get(f"{PATH}/{exxa.json()['id']}"), 404, "not_found_error")


BAD = "requests.0"
TOO_MANY_TOKENS = 10**6


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [entry("a"), entry("a")],
            "requests.1.custom_id: 'a' is already used by requests.0",
        ),
        (
            [entry("no spaces")],
            f"{BAD}.custom_id: must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -",
        ),
        (
            [entry("x" * 65)],
            f"{BAD}.custom_id: must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -",
        ),
        (
            [
                {
                    "custom_id": "a",
                    "params": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
                }
            ],
            f"{BAD}.params.max_tokens: Field required",
        ),
        (
            [entry(stream=True)],
            f"{BAD}.params.stream: stream must be false or absent in a batch: results are "
            "collected",
        ),
        (
            [entry(tools=[{"name": "f", "input_schema": {}}])],
            f"{BAD}.params.tools: tools is not supported: this engine generates text only",
        ),
        (
            [entry(content=[{"type": "image", "source": {"type": "base64", "data": "x"}}])],
            f"{BAD}.params.messages.0.content.0.type: 'image' blocks are not supported: "
            "this engine reads text only",
        ),
        (
            [
                entry(
                    messages=[
                        {"role": "user", "content": "a"},
                        {"role": "user", "content": "b"},
                    ]
                )
            ],
            f"{BAD}.params.messages.1.role: roles must alternate: messages 0 and 1 are both user",
        ),
        (
            [entry(messages=[{"role": "assistant", "content": "a"}])],
            f"{BAD}.params.messages.0.role: the first message must be a user turn",
        ),
        (
            [
                entry(
                    messages=[
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"},
                    ]
                )
            ],
            f"{BAD}.params.messages.1.role: a final assistant turn (prefill) is not "
            "supported: end with a user turn",
        ),
        (
            [entry(temperature=1.5)],
            f"{BAD}.params.temperature: Input should be less than or equal to 1",
        ),
        (
            [entry(unknown=1)],
            f"{BAD}.params.unknown: Extra inputs are not permitted",
        ),
    ],
)
def test_create_names_the_index_and_field_of_each_problem(
    ant: httpx.Client, entries: list[dict[str, Any]], message: str
) -> None:
    response = ant.post(PATH, json={"requests": entries})
    assert error(response, 400, "invalid_request_error") == message
    assert ant.get(PATH).json()["data"] == []  # nothing registered


def test_unknown_model_and_limits_are_named(ant: httpx.Client) -> None:
    response = ant.post(
        PATH, json={"requests": [entry("a", model="nope"), entry("b", max_tokens=TOO_MANY_TOKENS)]}
    )
    message = error(response, 400, "invalid_request_error")
    unknown, limit = message.split("; requests.1.")
    assert unknown.startswith("requests.0.params.model: model 'nope' is not served here")
    assert MODEL in unknown
    assert limit.startswith(f"params.max_tokens: {TOO_MANY_TOKENS} exceeds ")
    assert limit.endswith(f"the most {MODEL} allows")


def test_every_problem_of_every_entry_is_named_at_once(ant: httpx.Client) -> None:
    entries = [entry("ok"), entry("ok", stream=True), entry("b@d", model="nope")]
    message = error(ant.post(PATH, json={"requests": entries}), 400, "invalid_request_error")
    assert message.startswith(
        "requests.1.custom_id: 'ok' is already used by requests.0; requests.1.params.stream: "
        "stream must be false or absent in a batch: results are collected; "
        "requests.2.custom_id: must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -; "
        "requests.2.params.model: model 'nope' is not served here"
    )
    assert ant.get(PATH).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "requests: Field required"),
        ({"requests": []}, "requests: List should have at least 1 item after validation, not 0"),
        ({"requests": [{"params": {}}]}, "requests.0.custom_id: Field required"),
    ],
)
def test_a_malformed_body_is_invalid_request_error(
    ant: httpx.Client, body: dict[str, Any], message: str
) -> None:
    assert error(ant.post(PATH, json=body), 400, "invalid_request_error") == message


def test_json_that_is_not_json_is_invalid_request_error(ant: httpx.Client) -> None:
    response = ant.post(PATH, content=b"{nope", headers={"content-type": "application/json"})
    error(response, 400, "invalid_request_error")


def test_the_size_limit_is_the_batch_limit_not_the_body_limit(ant: httpx.Client) -> None:
    padding = "x" * (MAX_BODY_BYTES // 4)
    fits = [entry(f"r{i}", padding) for i in range(5)]  # over the body limit, under this
    assert MAX_BODY_BYTES < len(json.dumps({"requests": fits})) < ANTHROPIC_MAX_BATCH_BYTES
    assert create(ant, *fits)["request_counts"]["processing"] == 5
    over = json.dumps({"requests": [entry(f"r{i}", padding) for i in range(9)]}).encode()
    response = ant.post(PATH, content=over, headers={"content-type": "application/json"})
    assert error(response, 413, "request_too_large") == (
        f"request body of {len(over)} bytes exceeds the {ANTHROPIC_MAX_BATCH_BYTES}-byte limit"
    )


def test_headers_key_and_version(live_api: LiveApi, key: str) -> None:
    with httpx.Client(base_url=live_api.base_url, timeout=30) as bare:
        no_version = bare.get(PATH, headers={"x-api-key": key})
        assert error(no_version, 400, "invalid_request_error") == (
            "anthropic-version: header is required"
        )
        assert bare.get(PATH, headers=VERSION).json()["error"]["type"] == "authentication_error"
        assert bare.get(PATH, headers=VERSION).status_code == 401
        wrong = bare.get(PATH, headers={"x-api-key": "sk-nope", **VERSION})
        error(wrong, 401, "authentication_error")
        # The SDK's beta routes add a header and a query parameter: both ignored.
        beta = bare.get(
            PATH,
            params={"beta": "true"},
            headers={"x-api-key": key, "anthropic-beta": "message-batches-2024-09-24", **VERSION},
        )
        assert beta.status_code == 200 and beta.json()["data"] == []


def test_another_key_finds_none_of_them(live_api: LiveApi, ant: httpx.Client) -> None:
    batch = create(ant)["id"]
    ended = create(ant)["id"]
    ant.post(f"{PATH}/{ended}/cancel")
    with live_api.client(live_api.new_key()) as other:
        other.headers.update(VERSION)
        calls = [
            other.get(f"{PATH}/{batch}"),
            other.post(f"{PATH}/{batch}/cancel"),
            other.get(f"{PATH}/{ended}/results"),
            other.delete(f"{PATH}/{ended}"),
            other.get(f"{PATH}/{ended}"),
        ]
        for response, batch_id in zip(calls, [batch, batch, ended, ended, ended], strict=True):
            assert error(response, 404, "not_found_error") == (
                f"message batch {batch_id} not found"
            )
        assert other.get(PATH).json()["data"] == []
    assert ant.get(f"{PATH}/{batch}").json()["processing_status"] == "in_progress"
    assert ant.get(f"{PATH}/{ended}/results").status_code == 200


def test_an_id_that_is_no_id_is_not_found(ant: httpx.Client) -> None:
    message = error(ant.get(f"{PATH}/msgbatch_nope"), 404, "not_found_error")
    assert message == "message_batch msgbatch_nope not found: ids are 24 lower-case hex characters"
    error(ant.get("/anthropic/v1/nothing"), 404, "not_found_error")
