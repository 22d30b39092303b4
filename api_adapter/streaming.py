"""JSONL responses streamed page by page, so lists never build up in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

JSONL = "application/x-ndjson"
PAGE = 1000


def paged(fetch: Callable[[str | None], Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """Pages from ``fetch(after_id)`` until one comes back short (keyset pagination)."""
    after: str | None = None
    while True:
        page = fetch(after)
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = page[-1].id


def jsonl(objects: Iterable[Iterable[BaseModel]]) -> StreamingResponse:
    """A streamed JSONL body from pages of models."""

    def lines() -> Iterator[bytes]:
        for page in objects:
            yield b"".join(obj.model_dump_json().encode() + b"\n" for obj in page)

    return StreamingResponse(lines(), media_type=JSONL)
