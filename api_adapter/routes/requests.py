"""EXXA request routes: submit, list, read, status, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api_adapter.deps import KeyDep, ServicesDep
from api_adapter.streaming import PAGE, jsonl, paged
from offpeak.clock import now
from offpeak.errors import InvalidInput
from offpeak.schemas import RequestCreate, RequestObject, Status, StatusObject
from offpeak.state import requests as state
from offpeak.state.keys import require_balance
from offpeak.views import request_objects, status_object

router = APIRouter(prefix="/v1/requests", tags=["requests"])


@router.post("", status_code=201, response_model=StatusObject)
def create_request(create: RequestCreate, key: KeyDep, services: ServicesDep) -> StatusObject:
    """Submit one chat request; it is stored durably before this answers."""
    require_balance(key, services.settings.min_balance_usd)
    body = create.request_body
    spec = services.registry.get(body.model)
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > spec.max_completion_tokens:
        raise InvalidInput(
            f"max_tokens {asked} exceeds {spec.max_completion_tokens}, the most {body.model} allows"
        )
    row = state.new_request_row(key.id, create, now())
    state.insert_requests(services.db, [row])
    services.writer.accepted()
    return StatusObject.model_validate(row)


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


@router.get("/{request_id}", response_model=RequestObject)
def get_request(request_id: str, key: KeyDep, services: ServicesDep) -> RequestObject:
    """One request in full: body, metadata, batch, and its result or error once ended."""
    row = state.get_request(services.db, key.id, request_id)
    return request_objects(services.store, [row])[0]


@router.get("/{request_id}/status", response_model=StatusObject)
def get_request_status(request_id: str, key: KeyDep, services: ServicesDep) -> StatusObject:
    """A request's status and timestamps."""
    return status_object(state.get_request(services.db, key.id, request_id))


@router.post("/{request_id}/cancel", response_model=StatusObject)
def cancel_request(request_id: str, key: KeyDep, services: ServicesDep) -> StatusObject:
    """Cancel a request that has not ended (409 if it already has)."""
    return status_object(state.cancel_request(services.db, key.id, request_id, now()))
