"""ASGI middleware refusing oversized bodies (413) and bodies of the wrong type (415)
early: JSON everywhere, multipart on the upload routes, which have their own limit."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_adapter.errors import is_openai, openai_error_body

_WITH_BODY = {"POST", "PUT", "PATCH"}
# Room for a multipart body's boundaries and form fields around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024


async def _reply(send: Send, path: str, status: int, code: str, detail: str) -> None:
    shaped = (
        openai_error_body(status, code, detail)
        if is_openai(path)
        else {"detail": detail, "code": code}
    )
    body = json.dumps(shaped).encode()
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
    """Checks size and content type before any route reads the body.

    ``uploads`` maps the paths that take multipart file uploads to their largest file.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        uploads: dict[str, int] | None = None,
        raw_uploads: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}
        # Paths taking a raw file body of any type (datasets), each with its own limit;
        # the route counts the bytes of a body sent without a length.
        self.raw_uploads = raw_uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        if (raw_limit := self.raw_uploads.get(scope["path"].rstrip("/"))) is not None:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and int(length) > raw_limit:
                detail = f"upload of {int(length)} bytes exceeds the {raw_limit}-byte limit"
                await _reply(send, scope["path"], 413, "payload_too_large", detail)
                return
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        file_limit = self.uploads.get(path.rstrip("/"))
        max_bytes = self.max_bytes if file_limit is None else file_limit + MULTIPART_OVERHEAD
        if length is not None and int(length) > max_bytes:
            detail = (
                f"request body of {int(length)} bytes exceeds the {self.max_bytes}-byte limit"
                if file_limit is None
                else f"upload of {int(length)} bytes exceeds the {file_limit}-byte file limit"
            )
            await _reply(send, path, 413, "payload_too_large", detail)
            return
        has_body = chunked or (length is not None and int(length) > 0)
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        wanted = (
            media == b"multipart/form-data"
            if file_limit is not None
            else media == b"application/json" or media.endswith(b"+json")
        )
        if has_body and not wanted:
            shown = media.decode(errors="replace") or "none"
            kind = "application/json" if file_limit is None else "multipart/form-data"
            await _reply(
                send,
                path,
                415,
                "unsupported_media_type",
                f"request bodies must be {kind}, not {shown}",
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
            if received > max_bytes:
                raise HTTPException(413, f"request body exceeds the {max_bytes}-byte limit")
            return message

        await self.app(scope, counting_receive, send)
