"""Small builders shared by the API tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

MODEL = "llama-3.1-70b-instruct-fp16"


def chat_body(content: str = "Hello, how are you?", **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


def submit(api: httpx.Client, content: str = "Hello", **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/requests", json={"request_body": chat_body(content), **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code
