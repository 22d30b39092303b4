"""EXXA batch routes: create, list, read, status, cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api_adapter import responses
from api_adapter.deps import KeyDep, ServicesDep
from api_adapter.idempotency import IdempotentRoute, idempotent
from api_adapter.streaming import JSONL, PAGE, jsonl, paged
from offpeak.clock import now
from offpeak.errors import Conflict, InvalidInput, ResultExpired
from offpeak.events.guard import check_webhook
from offpeak.publish.objects import batch_object, status_object
from offpeak.publish.parquet import parquet_from_jsonl
from offpeak.publish.partial import partial_lines, pending_count
from offpeak.schemas import BatchCreate, BatchObject, Status, StatusObject
from offpeak.schemas.exxa import BatchUsage
from offpeak.state import batches as state
from offpeak.state import expectations
from offpeak.state.keys import require_balance
from offpeak.state.models import Batch
from offpeak.state.requests import cancel_request

router = APIRouter(
    prefix="/v1/batches",
    tags=["batches"],
    responses=responses.EXXA,
    route_class=IdempotentRoute,
)
PARQUET = "application/vnd.apache.parquet"
PENDING_HEADER = "X-Offpeak-Pending"  # partial results: the batch's requests not in them yet


def _with_counts(services: ServicesDep, rows: list[Batch]) -> list[BatchObject]:
    ids = [b.id for b in rows]
    tallies = state.tallies(services.db, ids)
    carbon = state.batch_carbon(services.db, ids)
    planned = expectations.for_batches(services.db, ids)
    return [
        batch_object(
            b,
            tallies[b.id].counts,
            carbon.get(b.id),
            BatchUsage(
                prompt_tokens=tallies[b.id].prompt_tokens,
                completion_tokens=tallies[b.id].completion_tokens,
            ),
            planned.get(b.id, expectations.NOT_PLANNED).pair,
        )
        for b in rows
    ]


@router.post("", status_code=201, response_model=BatchObject)
@idempotent
def create_batch(create: BatchCreate, key: KeyDep, services: ServicesDep) -> BatchObject:
    """Group your requests into a batch: all of them or none (404/409 name the culprits)."""
    require_balance(key, services.settings.min_balance_usd)
    webhook = str(create.webhook) if create.webhook else None
    check_webhook(webhook, allow_private=services.settings.webhook_allow_private)
    batch = state.create_batch(services.db, key.id, create, now())
    services.nudge()
    return _with_counts(services, [batch])[0]


@router.get("", response_class=StreamingResponse)
def list_batches(key: KeyDep, services: ServicesDep) -> StreamingResponse:
    """Your batches as JSONL, oldest first, with their request counts."""

    def fetch(after: str | None) -> list[Batch]:
        return state.list_batches(services.db, key.id, after=after, limit=PAGE)

    return jsonl(_with_counts(services, list(page)) for page in paged(fetch))


@router.get("/{batch_id}", response_model=BatchObject)
def get_batch(batch_id: str, key: KeyDep, services: ServicesDep) -> BatchObject:
    """One batch with its request counts."""
    return _with_counts(services, [state.get_batch(services.db, key.id, batch_id)])[0]


@router.get("/{batch_id}/status", response_model=StatusObject)
def get_batch_status(batch_id: str, key: KeyDep, services: ServicesDep) -> StatusObject:
    """A batch's status and timestamps."""
    return status_object(state.get_batch(services.db, key.id, batch_id))


@router.get("/{batch_id}/results", response_class=StreamingResponse)
def get_batch_results(
    batch_id: str,
    key: KeyDep,
    services: ServicesDep,
    format: Annotated[
        Literal["jsonl", "parquet"],
        Query(
            description="jsonl: one full request object per line; parquet: one row per "
            "request (custom_id, status, content, finish_reason, model, usage, error)."
        ),
    ] = "jsonl",
    partial: Annotated[
        bool,
        Query(
            description="Before the batch's results are published (while it runs, or once "
            "cancelled): the JSONL lines of its requests that have ended, with the count of "
            "the others in the `X-Offpeak-Pending` header."
        ),
    ] = False,
) -> StreamingResponse:
    """The batch's results as JSONL (one full request object per line) or Parquet."""
    batch = state.get_batch(services.db, key.id, batch_id)
    if partial and not batch.results_key:
        if format != "jsonl":
            raise InvalidInput(
                "partial results come as JSONL only", code="partial_results_jsonl_only"
            )
        return StreamingResponse(
            partial_lines(services.db, services.store, batch),
            media_type=JSONL,
            headers={PENDING_HEADER: str(pending_count(services.db, batch))},
        )
    if batch.status not in (Status.COMPLETED, Status.FAILED) or not batch.results_key:
        raise Conflict(
            f"batch {batch_id} is {batch.status}; its results are available once it is completed",
            code="batch_not_completed",
        )
    if batch.purged_at is not None:
        raise ResultExpired(f"batch {batch_id}'s results have expired and been deleted")
    stream = services.store.open(batch.results_key)
    if format == "parquet":
        return StreamingResponse(
            parquet_from_jsonl(stream),
            media_type=PARQUET,
            headers={"Content-Disposition": f'attachment; filename="{batch_id}.parquet"'},
            background=BackgroundTask(stream.close),
        )
    return StreamingResponse(
        iter(lambda: stream.read(1 << 16), b""),
        media_type=JSONL,
        background=BackgroundTask(stream.close),
        headers={PENDING_HEADER: "0"} if partial else None,
    )


@router.post("/{batch_id}/cancel", response_model=BatchObject | StatusObject)
def cancel_batch(batch_id: str, key: KeyDep, services: ServicesDep) -> BatchObject | StatusObject:
    """Cancel a batch and its unfinished requests; given a request id, cancel that request."""
    if state.find_batch(services.db, key.id, batch_id) is None:
        # EXXA's getting-started page cancels single requests through this route.
        return status_object(cancel_request(services.db, key.id, batch_id, now()))
    batch = state.cancel_batch(services.db, key.id, batch_id, now())
    return _with_counts(services, [batch])[0]
