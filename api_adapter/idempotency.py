"""`Idempotency-Key` on the create routes: a retried create returns the first answer.

Mark a route's function with :func:`idempotent` and give its router
``route_class=IdempotentRoute``. A call without the header runs as before. A call
with it claims the key for its API key and route before the route runs (see
:mod:`offpeak.state.idempotency`), and stores the route's answer when it is a success;
a failed call releases the claim, so its retry does the work anew. A retry with the
same body gets the stored answer (status and body, marked `Idempotent-Replayed`); with
another body, or while the first is still running, a 409 in the route's dialect (the
latter with `Retry-After`).

The claim is leased for a short while (``idempotency_lease_seconds``) and renewed while
the route runs, so a retry after the replica died mid-request takes the key over within
the lease rather than waiting for a long fixed delay. `POST /v1/requests` stores its
answer in the transaction that inserts the request (:func:`answered_with`).

The body is hashed as it streams into the route (datasets and files can be large), with
a multipart body's boundary left out: clients draw a new one for every attempt.
"""

from __future__ import annotations

import asyncio
import copy
import email.message
import hashlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive

from api_adapter.deps import Services, authenticate, secret_of
from api_adapter.limits import hand_over
from offpeak.clock import now
from offpeak.state import idempotency as state
from offpeak.state.committer import Also
from offpeak.state.db import Database

HEADER = "Idempotency-Key"
_VALID = re.compile(rf"[\x21-\x7e]{{1,{state.MAX_KEY_LENGTH}}}")
PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Makes retries safe: the same key and body within 24 hours return the "
    "first answer instead of creating again; the same key with another body answers 409 "
    "(`idempotency_key_reused`). Keys are per API key; 1-255 visible ASCII characters.",
    "schema": {"type": "string", "pattern": f"^[\\x21-\\x7e]{{1,{state.MAX_KEY_LENGTH}}}$"},
}
PURGE_EVERY = 3600.0  # seconds between two deletions of expired keys, per process

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def idempotent(endpoint: F) -> F:
    """Mark a create route as taking `Idempotency-Key` (its router's route_class must
    be :class:`IdempotentRoute`)."""
    endpoint.__offpeak_idempotent__ = True  # type: ignore[attr-defined]
    return endpoint


class BodyHasher:
    """SHA-256 of what makes two creates the same: query string and body, the body fed
    in chunks, a multipart boundary replaced by a constant wherever it falls."""

    def __init__(self, query: bytes, content_type: str | None) -> None:
        self._sha = hashlib.sha256(query + b"\n")
        message = email.message.Message()
        message["content-type"] = content_type or ""
        boundary = message.get_param("boundary")
        self._boundary = str(boundary).encode("latin-1") if isinstance(boundary, str) else b""
        self._tail = b""

    def update(self, chunk: bytes) -> None:
        if not self._boundary:
            self._sha.update(chunk)
            return
        *whole, last = (self._tail + chunk).split(self._boundary)
        for part in whole:
            self._sha.update(part)
            self._sha.update(b"\0boundary\0")
        # The end may hold the start of a boundary that the next chunk completes.
        keep = min(len(last), len(self._boundary) - 1)
        self._sha.update(last[: len(last) - keep])
        self._tail = last[len(last) - keep :]

    def hexdigest(self) -> str:
        sha = self._sha.copy()
        sha.update(self._tail)
        return sha.hexdigest()

    def wrap(self, receive: Receive) -> Receive:
        """``receive``, hashing the body chunks that pass through."""

        async def hashed() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.update(message.get("body", b""))
            return message

        return hashed

    async def drain(self, receive: Receive) -> str:
        """Hash the whole body from ``receive``; returns the digest."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self.update(message.get("body", b""))
            if not message.get("more_body", False):
                return self.hexdigest()


def _key_of(request: Request) -> str | None:
    value = request.headers.get(HEADER)
    if value is None or _VALID.fullmatch(value):
        return value
    raise RequestValidationError(
        [
            {
                "loc": ("header", HEADER),
                "msg": f"{HEADER} must be 1-{state.MAX_KEY_LENGTH} visible ASCII characters",
                "type": "invalid_idempotency_key",
            }
        ]
    )


_last_purge = 0.0


async def _purge_now_and_then(services: Services, at: int) -> None:
    global _last_purge
    if time.monotonic() - _last_purge > PURGE_EVERY:
        _last_purge = time.monotonic()
        await run_in_threadpool(state.purge, services.db, at - state.TTL_SECONDS)


@dataclass
class Held:
    """The key a request holds while its route runs (``request.state.idempotency``)."""

    claim: state.Claim
    hasher: BodyHasher
    dialect: str
    answered: bool = False  # stored with the route's own insert (answered_with)


def answered_with(request: Request, status: int, body: str) -> Also | None:
    """For a route whose work is one insert through the group committer: the step that
    stores its answer (``status``, ``body``) in that insert's transaction, so a process
    killed between the two cannot leave a request created but its answer lost (and
    created again by the retry). None when the call holds no key. Call it once the body
    has been read, and answer exactly ``status`` and ``body``."""
    held: Held | None = getattr(request.state, "idempotency", None)
    if held is None:
        return None
    held.answered = True
    digest = held.hasher.hexdigest()
    return state.answer_on(
        held.dialect, held.claim, body_sha256=digest, status=status, response=body
    )


async def _renew(db: Database, held: Held, lease: int) -> None:
    """Keep ``held``'s lease alive while its route works (a large upload outlasts it)."""
    while True:
        # A third of the lease: two renewals may fail (a database blip) before it ends.
        await asyncio.sleep(lease / 3)
        try:
            kept = await run_in_threadpool(state.renew, db, held.claim, now(), lease=lease)
        except SQLAlchemyError as exc:  # out of reach: try again at the next beat
            log.warning("could not renew an idempotency claim: %s", exc)
            continue
        if not kept:
            if not held.answered:
                log.warning(
                    "Idempotency-Key %r was taken over by a retry: this call will not "
                    "store its answer",
                    held.claim.idempotency_key,
                )
            return


async def _answer(request: Request, handler: Handler, route: str, key: str) -> Response:
    services: Services = request.app.state.services
    headers = request.headers
    api_key = await authenticate(
        services, secret_of(headers.get("x-api-key"), headers.get("authorization"))
    )
    at = now()
    await _purge_now_and_then(services, at)
    db, lease = services.db, services.settings.idempotency_lease_seconds
    claimed = await run_in_threadpool(
        lambda: state.claim(db, api_key.id, route, key, at, lease=lease)
    )
    hasher = BodyHasher(request.scope.get("query_string", b""), headers.get("content-type"))
    if isinstance(claimed, state.Stored):
        digest = "" if claimed.status is None else await hasher.drain(request.receive)
        status, answer = state.check_replay(claimed, digest, key, at)
        return Response(
            answer,
            status_code=status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    held = Held(claimed, hasher, db.dialect)
    hashed = Request(request.scope, hasher.wrap(request.receive))
    hashed.state.idempotency = held
    hand_over(hashed)  # only the parse is skipped: the body still streams through the hash
    renewing = asyncio.create_task(_renew(db, held, lease))
    try:
        response = await handler(hashed)
    except BaseException:
        # Shielded: a client that hangs up cancels this task, not the release.
        await asyncio.shield(run_in_threadpool(state.release, db, claimed))
        raise
    finally:
        renewing.cancel()
    if held.answered:
        return response
    body = getattr(response, "body", None)
    if (
        200 <= response.status_code < 300
        and isinstance(body, bytes)
        and not isinstance(response, StreamingResponse)
    ):
        stored = await run_in_threadpool(
            lambda: state.complete(
                db,
                claimed,
                body_sha256=hasher.hexdigest(),
                status=response.status_code,
                response=body.decode(),
            )
        )
        if not stored:
            log.warning("Idempotency-Key %r was taken over by a retry meanwhile", key)
    else:
        await run_in_threadpool(state.release, db, claimed)
    return response


class IdempotentRoute(APIRoute):
    """A route whose :func:`idempotent` endpoint honours `Idempotency-Key`; the
    router's other routes run as plain routes."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.idempotent = bool(getattr(endpoint, "__offpeak_idempotent__", False))
        if self.idempotent:
            extra = copy.deepcopy(kwargs.get("openapi_extra") or {})
            parameters = extra.setdefault("parameters", [])
            if not any(p.get("name") == HEADER for p in parameters):
                parameters.append(PARAMETER)
            kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if not self.idempotent:
            return handler
        route = f"{','.join(sorted(self.methods))} {self.path}"

        async def idempotent_handler(request: Request) -> Response:
            key = _key_of(request)
            if key is None:
                hand_over(request)
                return await handler(request)
            return await _answer(request, handler, route, key)

        return idempotent_handler
