"""ASGI middleware refusing oversized bodies (413), bodies of the wrong type (415) and
JSON or query strings holding what no store can keep (422) early: JSON everywhere,
multipart on the upload routes, which have their own limit."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_adapter.errors import is_openai, openai_error_body, unsafe_json_error
from offpeak.errors import NotFound, UnsafeJson
from offpeak.ids import ID_PATTERN
from offpeak.schemas import strict_json

_WITH_BODY = {"POST", "PUT", "PATCH"}
# Room for a multipart body's boundaries and form fields around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024


async def _reply(send: Send, path: str, status: int, code: str, detail: str) -> None:
    shaped: dict[str, object] = (
        openai_error_body(status, code, detail)
        if is_openai(path)
        else {"detail": detail, "code": code}
    )
    await _send(send, status, shaped)


async def _send(send: Send, status: int, shaped: dict[str, object]) -> None:
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
        if scope["type"] == "http" and (name := nul_in_query(scope["query_string"])):
            exc = UnsafeJson(
                f"query parameter {name}: the text holds a NUL character (%00)",
                (name,),
                code="nul_character",
            )
            await _send(send, *unsafe_json_error(scope["path"], exc, where="query"))
            return
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
        if file_limit is not None:
            await self._multipart(scope, receive, send, chunked=chunked, max_bytes=max_bytes)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        # A JSON body is read whole here (it is at most max_bytes) and checked by the one
        # strict parser before any route or parser sees it; then handed on unchanged.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                detail = f"request body exceeds the {max_bytes}-byte limit"
                await _reply(send, path, 413, "payload_too_large", detail)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            strict_json.loads(body)
        except UnsafeJson as exc:
            # Text that is not JSON at all keeps FastAPI's own answer (422 json_invalid).
            if exc.code != "json_invalid":
                status, shaped = unsafe_json_error(path, exc, where="body")
                await _send(send, status, shaped)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _multipart(
        self, scope: Scope, receive: Receive, send: Send, *, chunked: bool, max_bytes: int
    ) -> None:
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


async def path_ids(request: Request) -> None:
    """Every ``{..._id}`` in a path is an offpeak id; anything else names no object (404,
    the route's own not-found) and never reaches a query."""
    for name, value in request.path_params.items():
        if name.endswith("_id") and not ID_PATTERN.fullmatch(value):  # `$` allows a \n
            kind = name.removesuffix("_id")
            shown = value[:48].encode("unicode_escape").decode("ascii")
            raise NotFound(
                f"{kind} {shown} not found: ids are 24 lower-case hex characters",
                code=f"{kind}_not_found",
            )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then whatever the client sends (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def nul_in_query(query_string: bytes) -> str | None:
    """The first query parameter holding a NUL (``%00``), which no store can keep."""
    if b"%00" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None
