"""EXXA request routes: submit, list, read, status, cancel."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from api_adapter import responses
from api_adapter.deps import (
    API_KEY_SECURITY,
    KeyDep,
    Services,
    ServicesDep,
    authenticate,
    secret_of,
)
from api_adapter.idempotency import IdempotentRoute, answered_with, idempotent
from api_adapter.streaming import PAGE, jsonl, paged
from offpeak.clock import now
from offpeak.events.guard import check_webhook
from offpeak.ingest.admit import admit, asked_tokens, estimate
from offpeak.ingest.rows import request_row
from offpeak.publish.objects import request_objects, status_object
from offpeak.schemas import RequestCreate, Status, StatusObject
from offpeak.schemas.exxa import RequestProgress
from offpeak.state import expectations
from offpeak.state import requests as state

router = APIRouter(
    prefix="/v1/requests",
    tags=["requests"],
    responses=responses.EXXA,
    route_class=IdempotentRoute,
)


@router.post("", status_code=201, response_model=StatusObject, openapi_extra=API_KEY_SECURITY)
@idempotent
async def create_request(create: RequestCreate, request: Request) -> Response:
    """Submit one chat request; it is stored durably before this answers."""
    # The hot path: services and key are read here rather than injected, because
    # FastAPI's dependency solving costs more than everything else this route does.
    services: Services = request.app.state.services
    headers = request.headers
    key = await authenticate(
        services, secret_of(headers.get("x-api-key"), headers.get("authorization"))
    )
    body = create.request_body
    spec = admit(
        services.registry,
        body.model,
        "chat",
        max_tokens=asked_tokens(body),
        key=key,
        min_balance_usd=services.settings.min_balance_usd,
    )
    if create.webhook:  # a name is resolved: off the event loop
        webhook, allow = str(create.webhook), services.settings.webhook_allow_private
        await to_thread.run_sync(lambda: check_webhook(webhook, allow_private=allow))
    row = request_row(key.id, create, now(), estimate(spec, body))
    # Serialized here once: the hot path skips FastAPI's re-validation of the response.
    status = StatusObject.model_validate(row).model_dump_json()
    # With an Idempotency-Key, its answer is stored in the transaction of the insert.
    await services.committer.insert(row, answered_with(request, 201, status))
    return Response(status, status_code=201, media_type="application/json")


@router.get("", response_class=StreamingResponse)
def list_requests(
    key: KeyDep,
    services: ServicesDep,
    full: Annotated[bool, Query(description="Full objects instead of status objects.")] = False,
    status: Annotated[Status | None, Query(description="Only requests in this status.")] = None,
    batch_id: Annotated[str | None, Query(description="Only requests of this batch.")] = None,
) -> StreamingResponse:
    """Your requests as JSONL, oldest first: status objects, or full ones with `full=true`."""

    def fetch(after: str | None) -> list[state.Request]:
        return state.list_requests(
            services.db, key.id, after=after, limit=PAGE, batch_id=batch_id, status=status
        )

    if full:
        return jsonl(request_objects(services.store, page) for page in paged(fetch))
    return jsonl([status_object(row) for row in page] for page in paged(fetch))


@router.get("/{request_id}", response_model=RequestProgress)
def get_request(request_id: str, key: KeyDep, services: ServicesDep) -> RequestProgress:
    """One request in full: body, metadata, batch, its result or error once ended, and
    while it waits, when the scheduler's plan expects it to run."""
    row = state.get_request(services.db, key.id, request_id)
    expected = expectations.for_request(services.db, row)
    return RequestProgress(
        **request_objects(services.store, [row])[0].model_dump(),
        expected_start_at=expected.start_at,
        expected_completion_at=expected.completion_at,
    )


@router.get("/{request_id}/status", response_model=StatusObject)
def get_request_status(request_id: str, key: KeyDep, services: ServicesDep) -> StatusObject:
    """A request's status and timestamps."""
    return status_object(state.get_request(services.db, key.id, request_id))


@router.post("/{request_id}/cancel", response_model=StatusObject)
def cancel_request(request_id: str, key: KeyDep, services: ServicesDep) -> StatusObject:
    """Cancel a request that has not ended (409 if it already has)."""
    return status_object(state.cancel_request(services.db, key.id, request_id, now()))
