"""ASGI middleware refusing oversized bodies (413) and non-JSON bodies (415) early."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_WITH_BODY = {"POST", "PUT", "PATCH"}


async def _reply(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    """Checks size and content type before any route reads the body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        if length is not None and int(length) > self.max_bytes:
            await _reply(
                send,
                413,
                "payload_too_large",
                f"request body of {int(length)} bytes exceeds the {self.max_bytes}-byte limit",
            )
            return
        has_body = chunked or (length is not None and int(length) > 0)
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if has_body and not (media == b"application/json" or media.endswith(b"+json")):
            shown = media.decode(errors="replace") or "none"
            await _reply(
                send,
                415,
                "unsupported_media_type",
                f"request bodies must be application/json, not {shown}",
            )
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        # No length announced: count as the body arrives. FastAPI passes an
        # HTTPException raised while it reads the body through to the handlers.
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body exceeds the {self.max_bytes}-byte limit")
            return message

        await self.app(scope, counting_receive, send)
