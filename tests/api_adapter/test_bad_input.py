"""Every kind of bad input gets a precise status, a machine-readable code, and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from offpeak.state.keys import create_key, revoke_key
from tests.api_adapter.conftest import MAX_BODY_BYTES, LiveApi
from tests.api_adapter.helpers import MODEL, chat_body, error_code, lines


@pytest.fixture(autouse=True)
def nothing_written(api: httpx.Client) -> Iterator[None]:
    before = lines(api.get("/v1/requests"))
    yield
    assert lines(api.get("/v1/requests")) == before


def _post(api: httpx.Client, request_body: Any, **extra: Any) -> httpx.Response:
    return api.post("/v1/requests", json={"request_body": request_body, **extra})


@pytest.mark.parametrize(
    ("request_body", "where"),
    [
        ({"model": MODEL}, "messages"),
        (chat_body(stream=True), "stream"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"model": MODEL, "messages": []}, "messages"),
        (chat_body(n=0), "n"),
        (chat_body(n=129), "n"),
        (chat_body(max_tokens=0), "max_tokens"),
        (chat_body(max_tokens=16385), "max_tokens"),
        (chat_body(temperature=3), "temperature"),
        (chat_body(top_logprobs=2), "top_logprobs"),
        (chat_body(tools=[{"type": "function"}]), "tools"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "content",
        ),
        (chat_body(response_format={"type": "xml"}), "response_format"),
    ],
)
def test_invalid_chat_body_is_422_naming_the_field(
    api: httpx.Client, request_body: dict[str, Any], where: str
) -> None:
    response = _post(api, request_body)
    assert response.status_code == 422, response.text
    assert error_code(response) == "validation_error"
    assert where in response.text


def test_unknown_model_is_422_listing_the_served_ones(api: httpx.Client) -> None:
    response = _post(api, chat_body() | {"model": "gpt-9"})
    assert response.status_code == 422
    assert error_code(response) == "model_not_found"
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "request_body", "model"]
    assert "gpt-9" in detail["msg"] and MODEL in detail["msg"]


def test_an_embeddings_model_is_refused_on_the_chat_route(api: httpx.Client) -> None:
    response = _post(api, chat_body() | {"model": "all-minilm-l6-v2"})
    assert response.status_code == 422
    assert error_code(response) == "model_not_chat"
    assert "/openai/v1/batches" in response.text


@pytest.mark.parametrize("window", ["25", "0m", "73h", "1 day"])
def test_bad_completion_window_is_422(api: httpx.Client, window: str) -> None:
    response = _post(api, chat_body(), completion_window=window)
    assert response.status_code == 422
    assert "completion_window" in response.text


def test_malformed_json_is_422(api: httpx.Client) -> None:
    response = api.post(
        "/v1/requests", content=b'{"request_body": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    response = api.post("/v1/requests", content=b"model=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"
    assert "application/json" in response.json()["detail"]


def test_oversized_body_is_413(api: httpx.Client) -> None:
    response = _post(api, chat_body("x" * (MAX_BODY_BYTES + 1)))
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


def test_oversized_chunked_body_is_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield (
            b'{"request_body": {"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", '
        )
        yield b'"content": "' + b"y" * (MAX_BODY_BYTES + 10) + b'"}]}}'

    response = api.post(
        "/v1/requests", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


def test_missing_key_is_401(live_api: LiveApi) -> None:
    with live_api.client(None) as anonymous:
        response = anonymous.post("/v1/requests", json={"request_body": chat_body()})
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"
    assert "X-API-Key" in response.json()["detail"]


def test_unknown_key_is_401(live_api: LiveApi) -> None:
    with live_api.client("op-not-a-real-key") as stranger:
        response = stranger.get("/v1/requests")
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_revoked_key_is_401(live_api: LiveApi) -> None:
    key, secret = create_key(live_api.db, "to revoke", 5)
    revoke_key(live_api.db, key.id)
    with live_api.client(secret) as revoked:
        response = revoked.post("/v1/requests", json={"request_body": chat_body()})
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_balance_under_the_minimum_is_402(live_api: LiveApi) -> None:
    with live_api.client(live_api.new_key(credits=0.1)) as poor:
        response = poor.post("/v1/requests", json={"request_body": chat_body()})
        assert response.status_code == 402
        assert error_code(response) == "insufficient_credits"
        assert "$0.20" in response.json()["detail"]
        assert lines(poor.get("/v1/requests")) == []


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    missing = "f" * 24
    for path in (f"/v1/requests/{missing}", f"/v1/requests/{missing}/status", "/v1/requests/x"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert error_code(response) == "request_not_found"
    for path in (f"/v1/batches/{missing}", f"/v1/batches/{missing}/status"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert error_code(response) == "batch_not_found"
    assert api.post(f"/v1/requests/{missing}/cancel").status_code == 404
