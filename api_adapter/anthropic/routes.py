"""Anthropic's Message Batches API under /anthropic/v1/messages/batches.

A message batch is one of our batches: each entry of its `requests` is one of our
requests (`metadata.custom_id` holds its custom_id), which the EXXA routes show too.
`x-api-key` authenticates with the same keys; `anthropic-version` is required; errors
come in Anthropic's shape (api_adapter/anthropic/errors.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api_adapter import responses
from api_adapter.deps import KeyDep, Services, ServicesDep
from api_adapter.idempotency import IdempotentRoute, idempotent
from api_adapter.limits import body_limit
from offpeak.anthropic import batch_object, check_entries
from offpeak.clock import now
from offpeak.errors import Conflict, InvalidInput, ResultExpired
from offpeak.ingest.anthropic import register_batch
from offpeak.publish.anthropic import result_lines
from offpeak.schemas import Status
from offpeak.schemas.anthropic import (
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchCreate,
    MessageBatchList,
)
from offpeak.state import anthropic as state
from offpeak.state import batches
from offpeak.state.keys import require_balance
from offpeak.state.models import Batch

PREFIX = "/anthropic/v1/messages/batches"
JSONL = "application/x-jsonl"


async def anthropic_version(
    anthropic_version: Annotated[str, Header(description="The API version, e.g. `2023-06-01`.")],
) -> None:
    """Every call names the API version it speaks, as Anthropic's API requires."""
    if not anthropic_version:
        raise InvalidInput(
            "anthropic-version: header is required", code="anthropic_version_required"
        )


router = APIRouter(
    prefix=PREFIX,
    tags=["anthropic"],
    responses=responses.ANTHROPIC,
    dependencies=[Depends(anthropic_version)],
    route_class=IdempotentRoute,
)


def _objects(services: Services, request: Request, rows: list[Batch]) -> list[MessageBatch]:
    ids = [b.id for b in rows]
    counts = batches.tallies(services.db, ids)
    open_ = batches.unsettled(services.db, ids)
    return [
        batch_object(
            batch,
            counts[batch.id],
            settled=batch.id not in open_,
            results_url=str(request.url_for("message_batch_results", message_batch_id=batch.id)),
        )
        for batch in rows
    ]


@router.post("", response_model=MessageBatch)
@idempotent
@body_limit("json", lambda settings: settings.anthropic_max_batch_bytes)
def create_message_batch(
    create: MessageBatchCreate, request: Request, key: KeyDep, services: ServicesDep
) -> MessageBatch:
    """Create a message batch. Every entry is checked first: a 400 names the index and
    field of each problem, and then nothing is created."""
    settings = services.settings
    require_balance(key, settings.min_balance_usd)
    entries = check_entries(
        create.requests, services.registry, max_requests=settings.anthropic_max_batch_requests
    )
    batch = register_batch(services.db, services.store, key.id, entries, now())
    services.nudge()
    return _objects(services, request, [batch])[0]


@router.get("", response_model=MessageBatchList)
def list_message_batches(
    request: Request,
    key: KeyDep,
    services: ServicesDep,
    before_id: Annotated[
        str | None, Query(description="The page of batches just newer than this one.")
    ] = None,
    after_id: Annotated[
        str | None, Query(description="The page of batches just older than this one.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Batches per page.")] = 20,
) -> MessageBatchList:
    """Your message batches, newest first."""
    rows = state.list_batches(
        services.db, key.id, limit=limit + 1, before_id=before_id, after_id=after_id
    )
    # One more than asked tells whether there are more; with before_id the extra one is
    # the newest (the far end of the page), else the oldest.
    page = (rows[1:] if before_id else rows[:limit]) if len(rows) > limit else rows
    data = _objects(services, request, page)
    return MessageBatchList(
        data=data,
        has_more=len(rows) > limit,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


@router.get("/{message_batch_id}", response_model=MessageBatch)
def retrieve_message_batch(
    message_batch_id: str, request: Request, key: KeyDep, services: ServicesDep
) -> MessageBatch:
    """One message batch: its processing status, request counts and, once ended, where
    its results are."""
    batch = state.get_batch(services.db, key.id, message_batch_id)
    return _objects(services, request, [batch])[0]


@router.post("/{message_batch_id}/cancel", response_model=MessageBatch)
def cancel_message_batch(
    message_batch_id: str, request: Request, key: KeyDep, services: ServicesDep
) -> MessageBatch:
    """Cancel a message batch: requests not yet run are cancelled, finished ones keep
    their results; it is `canceling` until its running work has ended."""
    batch = state.get_batch(services.db, key.id, message_batch_id)
    if batch.status != Status.CANCELLED:  # cancelled before: the same outcome
        try:
            batch = batches.cancel_batch(services.db, key.id, message_batch_id, now())
        except Conflict:
            batch = state.get_batch(services.db, key.id, message_batch_id)
            if batch.status != Status.CANCELLED:
                raise Conflict(
                    f"message batch {message_batch_id} has ended; only a batch in progress "
                    "can be cancelled",
                    code="message_batch_not_cancellable",
                ) from None
    return _objects(services, request, [batch])[0]


@router.delete("/{message_batch_id}", response_model=DeletedMessageBatch)
def delete_message_batch(
    message_batch_id: str, key: KeyDep, services: ServicesDep
) -> DeletedMessageBatch:
    """Delete an ended message batch, its requests and its results."""
    batch = state.delete_batch(services.db, key.id, message_batch_id)
    if batch.results_key:
        services.store.delete(batch.results_key)
    return DeletedMessageBatch(id=batch.id)


@router.get(
    "/{message_batch_id}/results",
    name="message_batch_results",
    response_class=StreamingResponse,
    responses={200: {"content": {JSONL: {}}, "description": "One result line per request."}},
)
async def message_batch_results(
    message_batch_id: str, request: Request, key: KeyDep, services: ServicesDep
) -> StreamingResponse:
    """The results of an ended message batch, one JSON line per request."""
    batch = await run_in_threadpool(state.get_batch, services.db, key.id, message_batch_id)
    (shown,) = await run_in_threadpool(_objects, services, request, [batch])
    if shown.processing_status != "ended":
        raise Conflict(
            f"message batch {message_batch_id} is {shown.processing_status}; its results "
            "are available once it has ended",
            code="message_batch_not_ended",
        )
    if batch.purged_at is not None:
        raise ResultExpired(
            f"message batch {message_batch_id}'s results have expired and been deleted"
        )
    return StreamingResponse(result_lines(services.db, services.store, batch), media_type=JSONL)
