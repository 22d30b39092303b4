"""Factories for test data: request bodies, API keys, stored requests."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from offpeak.clock import now
from offpeak.schemas import ChatCompletionRequest, RequestCreate, Status
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import ApiKey, Request
from offpeak.state.requests import insert_requests, new_request_row

MODEL = "llama-3.1-8b-instruct-fp16"

# The body of `POST /v1/requests` as the EXXA documentation shows it.
EXXA_EXAMPLE: dict[str, Any] = {
    "request_body": {
        "model": "llama-3.1-8b-instruct-fp16",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a haiku about the ocean."},
        ],
        "max_tokens": 256,
        "temperature": 0.5,
    },
    "metadata": {"customer_id": "c-42", "dataset": "haikus"},
}


def chat_body(content: str = "Hello there", *, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    """A valid chat-completions body as JSON data; ``fields`` override or add members."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **fields}


def chat_request(content: str = "Hello there", **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(chat_body(content, **fields))


def request_create(
    content: str = "Hello there",
    *,
    metadata: dict[str, Any] | None = None,
    completion_window: str = "24h",
    webhook: str | None = None,
    **body_fields: Any,
) -> RequestCreate:
    """A validated `POST /v1/requests` body."""
    return RequestCreate.model_validate(
        {
            "request_body": chat_body(content, **body_fields),
            "metadata": metadata,
            "completion_window": completion_window,
            "webhook": webhook,
        }
    )


def new_key(db: Database, credits_usd: str = "10", name: str = "tester") -> tuple[ApiKey, str]:
    """A fresh API key and its secret."""
    return create_key(db, name, Decimal(credits_usd))


def add_requests(
    db: Database,
    key_id: str,
    count: int = 1,
    *,
    at: int | None = None,
    completion_window: str = "24h",
    metadata: dict[str, Any] | None = None,
) -> list[str]:
    """Insert ``count`` accepted requests for ``key_id``; their ids in id order."""
    created = now() if at is None else at
    rows = [
        new_request_row(
            key_id,
            request_create(
                f"prompt {i}",
                completion_window=completion_window,
                metadata={"n": i} if metadata is None else metadata,
            ),
            created,
        )
        for i in range(count)
    ]
    insert_requests(db, rows)
    return sorted(row["id"] for row in rows)


def set_status(db: Database, request_ids: Iterable[str], status: Status) -> None:
    """Force requests into ``status``, as the inference flow would."""
    with db.session() as session:
        session.execute(
            update(Request).where(Request.id.in_(list(request_ids))).values(status=status.value)
        )


def request_rows(db: Database, request_ids: Iterable[str]) -> dict[str, Request]:
    """The stored rows by id, whatever key they belong to."""
    with db.session() as session:
        rows = session.scalars(select(Request).where(Request.id.in_(list(request_ids))))
        return {row.id: row for row in rows}


def unsealed_count(db: Database) -> int:
    with db.session() as session:
        return len(list(session.scalars(select(Request.id).where(Request.segment.is_(None)))))
