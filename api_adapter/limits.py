"""ASGI middleware refusing oversized bodies (413), bodies of the wrong type (415) and
JSON or query strings holding what no store can keep (422) early: JSON everywhere,
multipart or raw files on the upload routes.

A route whose body is not the default (a JSON body of at most `max_body_bytes`) says so
with :func:`body_limit`; the middleware reads that from the route the path names. It
runs before routing, rather than in a route class, so that these answers come first for
every path, as they always have (an oversized body to an unknown path is a 413, not a
404), and before any route or idempotency work starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_origin
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_adapter import dialects
from api_adapter.dialects import Answer
from offpeak.config import Settings
from offpeak.errors import NotFound, UnsafeJson
from offpeak.ids import ID_PATTERN
from offpeak.schemas import DatasetMapping, strict_json

_WITH_BODY = {"POST", "PUT", "PATCH"}
# The scope entry holding the JSON body this middleware parsed and checked: the route
# takes it from there (see hand_over) instead of parsing the same bytes again.
PARSED_BODY = "offpeak.parsed_body"
LIMIT_CACHE_ENTRIES = 4096  # paths whose declared limit is remembered
# Room for a multipart body's boundaries and form fields around an uploaded file.
MULTIPART_OVERHEAD = 64 * 1024
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class BodyLimit:
    """What a route takes as its body, and its largest size in bytes."""

    # json: checked whole by the strict parser; multipart: a file upload (the limit is
    # the file's, the form around it may add MULTIPART_OVERHEAD); raw: a file of any type,
    # whose route counts the bytes of a body sent without a length.
    kind: Literal["json", "multipart", "raw"]
    limit: Callable[[Settings], int]


def body_limit(
    kind: Literal["json", "multipart", "raw"], limit: Callable[[Settings], int]
) -> Callable[[F], F]:
    """Declare a route's body and its limit (a setting), e.g.
    ``@body_limit("multipart", lambda s: s.openai_max_file_bytes)`` under ``@router.post``."""

    def mark(endpoint: F) -> F:
        endpoint.__offpeak_body_limit__ = BodyLimit(kind, limit)  # type: ignore[attr-defined]
        return endpoint

    return mark


def declared_limits(routes: list[Any]) -> list[tuple[re.Pattern[str], BodyLimit]]:
    """The routes that declare their body, as (path pattern, limit)."""
    return [
        (route.path_regex, route.endpoint.__offpeak_body_limit__)
        for route in routes
        if isinstance(route, APIRoute) and hasattr(route.endpoint, "__offpeak_body_limit__")
    ]


async def _reply(send: Send, path: str, status: int, detail: str) -> None:
    await _send(send, dialects.for_path(path).http_error(status, detail))


async def _send(send: Send, answer: Answer) -> None:
    body = json.dumps(answer.body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    """Checks size and content type before any route reads the body."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # Read from the application's routes at the first request with a body.
        self._declared: list[tuple[re.Pattern[str], BodyLimit]] | None = None
        # Path -> limit: the hot paths repeat, and the scan tries every declared route.
        self._by_path: dict[str, BodyLimit | None] = {}

    def _limit_of(self, scope: Scope) -> BodyLimit | None:
        """The body the route at this path declares (any method: a wrong method hears
        the route's limits before its 405), or None for a JSON body of the default size."""
        if self._declared is None:
            self._declared = declared_limits(scope["app"].router.routes)
        path = scope["path"].rstrip("/")
        if path in self._by_path:
            return self._by_path[path]
        if len(self._by_path) >= LIMIT_CACHE_ENTRIES:
            self._by_path.clear()
        found = next((limit for regex, limit in self._declared if regex.match(path)), None)
        self._by_path[path] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (exc := query_problem(scope["query_string"])):
            await _send(send, dialects.for_path(scope["path"]).unsafe_json(exc, "query"))
            return
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = self._limit_of(scope)
        if declared is not None and declared.kind == "raw":
            raw_limit = declared.limit(self.settings)
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and int(length) > raw_limit:
                detail = f"upload of {int(length)} bytes exceeds the {raw_limit}-byte limit"
                await _reply(send, scope["path"], 413, detail)
                return
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        file_limit = None
        max_bytes = self.settings.max_body_bytes
        if declared is not None and declared.kind == "multipart":
            file_limit = declared.limit(self.settings)
            max_bytes = file_limit + MULTIPART_OVERHEAD
        elif declared is not None:
            max_bytes = declared.limit(self.settings)
        if length is not None and int(length) > max_bytes:
            detail = (
                f"request body of {int(length)} bytes exceeds the {max_bytes}-byte limit"
                if file_limit is None
                else f"upload of {int(length)} bytes exceeds the {file_limit}-byte file limit"
            )
            await _reply(send, path, 413, detail)
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
            await _reply(send, path, 415, f"request bodies must be {kind}, not {shown}")
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
                await _reply(send, path, 413, detail)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            scope[PARSED_BODY] = strict_json.loads(body)
        except UnsafeJson as exc:
            # Text that is not JSON at all keeps FastAPI's own answer (422 json_invalid).
            if exc.code != "json_invalid":
                await _send(send, dialects.for_path(path).unsafe_json(exc, "body"))
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


def hand_over(request: Request) -> None:
    """Give ``request`` the JSON value this middleware parsed from its body, so that
    FastAPI's ``await request.json()`` returns it rather than parsing the bytes again
    (Starlette keeps a parsed body in ``_json``). The strict parse yields exactly what
    ``json.loads`` would for any body it lets through."""
    if PARSED_BODY in request.scope:
        request._json = request.scope[PARSED_BODY]


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


# The query parameters that are lists, given once per item (`POST /v1/datasets`'s
# parameter_columns, as offpeak's client sends them): read from the schema, so a new
# list parameter cannot be refused by mistake.
LIST_PARAMETERS = frozenset(
    name
    for name, field in DatasetMapping.model_fields.items()
    if get_origin(field.annotation) is list
)


def query_problem(query_string: bytes) -> UnsafeJson | None:
    """A query string no route may take: a NUL in a parameter, or a parameter given twice
    (every other parameter of this API than LIST_PARAMETERS is one value; a repeat would
    silently win or lose)."""
    if name := nul_in_query(query_string):
        return UnsafeJson(
            f"query parameter {name}: the text holds a NUL character (%00)",
            (name,),
            code="nul_character",
        )
    if b"&" not in query_string:
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen and name not in LIST_PARAMETERS:
            return UnsafeJson(
                f"query parameter {name} is given more than once",
                (name,),
                code="repeated_query_parameter",
            )
        seen.add(name)
    return None


def nul_in_query(query_string: bytes) -> str | None:
    """The first query parameter holding a NUL (``%00``), which no store can keep."""
    if b"%00" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None
