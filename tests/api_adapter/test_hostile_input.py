"""Hostile input against the live API on both stacks (issue 16): values no store can keep
are refused with a precise 422 (400 on the OpenAI routes) naming the field, ids that are
not ids answer the route's 404, nothing answers 500, and what was accepted reads back."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, chat_body, error_code

JSON = {"content-type": "application/json"}
LONE = "\ud800"  # a lone surrogate: json.dumps writes it as the escape "\ud800"
NUL = "\x00"


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    # JSONL lines end at "\n" only: U+2028 inside a string is legal JSON, which
    # str.splitlines() would split on.
    assert response.status_code == 200, response.text[:300]
    return [json.loads(line) for line in response.text.split("\n") if line]


def _raw(api: httpx.Client, path: str, body: Any, **numbers: str) -> httpx.Response:
    """POST ``body`` as JSON; each ``"@name"`` string becomes the literal ``numbers[name]``
    (NaN, 1e999: text json.dumps cannot write)."""
    text = json.dumps(body)
    for name, literal in numbers.items():
        text = text.replace(f'"@{name}"', literal)
    return api.post(path, content=text.encode(), headers=JSON)


def _request(request_body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"request_body": request_body, **extra}


def _with_text(value: str) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    """Every place the issue found a lone surrogate to break, holding ``value``."""
    schema = {"type": "object", "properties": {value: {"type": "string"}}}
    text_part = {"role": "user", "content": [{"type": "text", "text": value}]}
    return {
        "content": (_request(chat_body(value)), ["request_body", "messages", 0, "content"]),
        "name": (
            _request(chat_body() | {"messages": [{"role": "user", "content": "x", "name": value}]}),
            ["request_body", "messages", 0, "name"],
        ),
        "text part": (
            _request(chat_body() | {"messages": [text_part]}),
            ["request_body", "messages", 0, "content", 0, "text"],
        ),
        "user": (_request(chat_body(user=value)), ["request_body", "user"]),
        "stop": (_request(chat_body(stop=["ok", value])), ["request_body", "stop", 1]),
        "json_schema": (
            _request(
                chat_body(
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "s", "schema": schema},
                    }
                )
            ),
            ["request_body", "response_format", "json_schema", "schema", "properties"],
        ),
        "metadata": (_request(chat_body(), metadata={"note": value}), ["metadata", "note"]),
    }


SURROGATES = _with_text(f"a{LONE}b")
NULS = _with_text(f"a{NUL}b")


def _refused(response: httpx.Response, code: str, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    assert error_code(response) == code
    detail = response.json()["detail"][0]
    assert detail["type"] == code
    assert detail["loc"][: len(loc) + 1] == ["body", *loc], detail


@pytest.mark.parametrize("field", list(SURROGATES))
def test_a_lone_surrogate_is_422_naming_the_field(api: httpx.Client, field: str) -> None:
    body, loc = SURROGATES[field]
    _refused(_raw(api, "/v1/requests", body), "lone_surrogate", loc)
    assert lines(api.get("/v1/requests?full=true")) == []


@pytest.mark.parametrize("field", list(NULS))
def test_a_nul_character_is_422_naming_the_field(api: httpx.Client, field: str) -> None:
    body, loc = NULS[field]
    _refused(_raw(api, "/v1/requests", body), "nul_character", loc)
    assert lines(api.get("/v1/requests?full=true")) == []


def test_a_lone_surrogate_in_a_key_is_refused(api: httpx.Client) -> None:
    response = _raw(api, "/v1/requests", _request(chat_body(), metadata={LONE: 1}))
    _refused(response, "lone_surrogate", ["metadata"])
    assert response.json()["detail"][0]["loc"] == ["body", "metadata", "\\ud800"]


def test_a_surrogate_sent_as_utf8_bytes_is_refused(api: httpx.Client) -> None:
    text = json.dumps(_request(chat_body("@"))).replace("@", "\\u0041")
    raw = text.encode().replace(b"\\u0041", b"\xed\xa0\x80")  # what json.loads would pass
    response = api.post("/v1/requests", content=raw, headers=JSON)
    _refused(response, "invalid_utf8", [])


@pytest.mark.parametrize(
    ("literal", "code"),
    [
        ("NaN", "non_finite_number"),
        ("Infinity", "non_finite_number"),
        ("-Infinity", "non_finite_number"),
        ("1e999", "number_out_of_range"),
        ("-1e999", "number_out_of_range"),
        ("123456789012345678901234567890", "number_out_of_range"),
    ],
)
def test_numbers_json_cannot_hold_are_422(api: httpx.Client, literal: str, code: str) -> None:
    body = _request(chat_body(), metadata={"score": {"x": "@n"}})
    _refused(_raw(api, "/v1/requests", body, n=literal), code, ["metadata", "score", "x"])
    body = _request(chat_body(logit_bias={"50256": "@n"}))
    _refused(_raw(api, "/v1/requests", body, n=literal), code, ["request_body", "logit_bias"])
    body = _request(chat_body(temperature="@n"))
    _refused(_raw(api, "/v1/requests", body, n=literal), code, ["request_body", "temperature"])
    assert lines(api.get("/v1/requests")) == []


def test_nesting_too_deep_is_422_and_the_api_lives_on(api: httpx.Client) -> None:
    for depth in (65, 5_000, 100_000):
        deep: Any = "leaf"
        for _ in range(min(depth, 900)):
            deep = [deep]
        text = json.dumps(_request(chat_body(), metadata={"deep": deep}))
        if depth > 900:  # beyond what json.dumps writes: build the text directly
            text = text.replace('"leaf"', "[" * (depth - 900) + '"leaf"' + "]" * (depth - 900))
        response = api.post("/v1/requests", content=text.encode(), headers=JSON)
        assert response.status_code == 422, response.text[:300]
        assert error_code(response) == "json_too_deep"
    assert api.get("/healthz").status_code == 200


def test_a_batch_body_is_checked_too(api: httpx.Client) -> None:
    body = {"requests_ids": ["0" * 24], "metadata": {"x": "@n"}}
    _refused(_raw(api, "/v1/batches", body, n="NaN"), "non_finite_number", ["metadata", "x"])
    body = {"requests_ids": ["0" * 24], "metadata": {"x": NUL}}
    _refused(_raw(api, "/v1/batches", body), "nul_character", ["metadata", "x"])


def test_openai_routes_refuse_in_their_own_dialect(api: httpx.Client) -> None:
    body = {
        "input_file_id": "0" * 24,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"x": "@n"},
    }
    response = _raw(api, "/openai/v1/batches", body, n="Infinity")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "non_finite_number"
    assert error["param"] == "metadata.x"
    assert error["type"] == "invalid_request_error"
    body["metadata"] = {"x": LONE}
    response = _raw(api, "/openai/v1/batches", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "lone_surrogate"


BAD_IDS = [
    "%00",
    "a" * 23 + "%00",
    "%C3%A9" * 12,  # unicode
    "0" * 25,  # too long
    "0" * 23,  # too short
    "A" * 24,  # upper case
    "0" * 24 + "%0A",  # a trailing newline, which `$` would let through
    "x" * 5_000,
]
EXXA_ID_ROUTES = [
    ("GET", "/v1/requests/{}", "request_not_found"),
    ("GET", "/v1/requests/{}/status", "request_not_found"),
    ("POST", "/v1/requests/{}/cancel", "request_not_found"),
    ("GET", "/v1/batches/{}", "batch_not_found"),
    ("GET", "/v1/batches/{}/status", "batch_not_found"),
    ("GET", "/v1/batches/{}/results", "batch_not_found"),
    ("POST", "/v1/batches/{}/cancel", "batch_not_found"),
]
OPENAI_ID_ROUTES = [
    ("GET", "/openai/v1/files/{}", "file_not_found"),
    ("GET", "/openai/v1/files/{}/content", "file_not_found"),
    ("DELETE", "/openai/v1/files/{}", "file_not_found"),
    ("GET", "/openai/v1/batches/{}", "batch_not_found"),
    ("POST", "/openai/v1/batches/{}/cancel", "batch_not_found"),
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_an_id_that_is_not_an_id_is_the_routes_404(api: httpx.Client, bad: str) -> None:
    for method, route, code in EXXA_ID_ROUTES:
        response = api.request(method, route.format(bad))
        assert response.status_code == 404, (route, bad, response.text[:200])
        assert error_code(response) == code
    for method, route, code in OPENAI_ID_ROUTES:
        response = api.request(method, route.format(bad))
        assert response.status_code == 404, (route, bad, response.text[:200])
        assert response.json()["error"]["code"] == code


def test_a_nul_in_a_query_is_422(api: httpx.Client) -> None:
    response = api.get("/v1/requests?batch_id=%00")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "batch_id"]
    assert error_code(response) == "nul_character"
    for path in ("/openai/v1/files?after=a%00", "/openai/v1/batches?after=%00"):
        response = api.get(path)
        assert response.status_code == 400, response.text
        assert response.json()["error"] | {"message": ""} == {
            "message": "",
            "type": "invalid_request_error",
            "param": "after",
            "code": "nul_character",
        }


# What is legitimate is stored and reads back intact, on both stacks (issue 16 item 4).
AWKWARD_TEXT = (
    'Grüße 東京 مرحبا \u2028\u2029 \u200b \U0001f600\U0001f469\u200d\U0001f4bb "q" \\ \n\t'
)


def _deep(depth: int) -> Any:
    value: Any = {"leaf": AWKWARD_TEXT}
    for i in range(depth):
        value = {f"level{i}": value}
    return value


AWKWARD_METADATA = {
    "text": AWKWARD_TEXT,
    AWKWARD_TEXT: "a key of awkward text",
    "": "an empty key",
    "ints": [2**63 - 1, -(2**63), 2**64 - 1, 0, -1],
    "floats": [1.7976931348623157e308, 5e-324, -0.0, 0.1],
    "deep": _deep(50),
    "nothing": [None, True, False, {}, [], ""],
}


def _send(api: httpx.Client, path: str, body: Any, ensure_ascii: bool) -> httpx.Response:
    content = json.dumps(body, ensure_ascii=ensure_ascii).encode()
    return api.post(path, content=content, headers=JSON)


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_awkward_values_are_stored_and_read_back(api: httpx.Client, ensure_ascii: bool) -> None:
    messages = [
        {"role": "system", "content": AWKWARD_TEXT, "name": AWKWARD_TEXT},
        {"role": "user", "content": [{"type": "text", "text": AWKWARD_TEXT}]},
    ]
    schema = {"type": "object", "properties": {AWKWARD_TEXT: {"type": "string"}}}
    sent = chat_body() | {
        "messages": messages,
        "user": AWKWARD_TEXT,
        "stop": [AWKWARD_TEXT],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "seed": 2**63 - 1,
    }
    body = _request(sent, metadata=AWKWARD_METADATA)
    created = _send(api, "/v1/requests", body, ensure_ascii)
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]

    def intact(obj: dict[str, Any]) -> None:
        assert obj["metadata"] == AWKWARD_METADATA
        stored = obj["request_body"]
        for field in ("messages", "user", "stop", "response_format", "seed", "model"):
            assert stored[field] == sent[field], field

    got = api.get(f"/v1/requests/{request_id}")
    assert got.status_code == 200, got.text
    intact(got.json())
    listed = api.get("/v1/requests?full=true")
    assert listed.status_code == 200
    [full] = [obj for obj in lines(listed) if obj["id"] == request_id]
    intact(full)
    assert [s["id"] for s in lines(api.get("/v1/requests"))].count(request_id) == 1
    assert api.get(f"/v1/requests/{request_id}/status").status_code == 200

    batch = _send(
        api, "/v1/batches", {"requests_ids": [request_id], "metadata": AWKWARD_METADATA}, True
    )
    assert batch.status_code == 201, batch.text
    batch_id = batch.json()["id"]
    assert batch.json()["metadata"] == AWKWARD_METADATA
    assert api.get(f"/v1/batches/{batch_id}").json()["metadata"] == AWKWARD_METADATA
    [listed_batch] = [b for b in lines(api.get("/v1/batches")) if b["id"] == batch_id]
    assert listed_batch["metadata"] == AWKWARD_METADATA
    full_after = lines(api.get(f"/v1/requests?full=true&batch_id={batch_id}"))
    assert [obj["id"] for obj in full_after] == [request_id]
    intact(full_after[0])


def test_a_large_legitimate_body_is_accepted(api: httpx.Client) -> None:
    # The live server's body limit is small (conftest): many messages and keys within it.
    messages = [{"role": "user", "content": f"m{i}"} for i in range(2_000)]
    metadata = {f"k{i}": i for i in range(5_000)}
    response = api.post(
        "/v1/requests", json=_request(chat_body() | {"messages": messages}, metadata=metadata)
    )
    assert response.status_code == 201, response.text[:300]
    got = api.get(f"/v1/requests/{response.json()['id']}").json()
    assert got["metadata"] == metadata
    assert got["request_body"]["messages"] == messages
    assert got["request_body"]["model"] == MODEL


def test_a_query_parameter_given_twice_is_refused(live_api: LiveApi, key: str) -> None:
    with live_api.client(key) as client:
        refused = client.get("/v1/requests?status=completed&status=failed")
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "repeated_query_parameter"
        assert refused.json()["detail"][0]["loc"] == ["query", "status"]
        oai = client.get(
            "/openai/v1/batches?limit=1&limit=2", headers={"Authorization": f"Bearer {key}"}
        )
        assert oai.status_code == 400 and oai.json()["error"]["code"] == "repeated_query_parameter"
        assert client.get("/v1/requests?status=completed&full=true").status_code == 200
