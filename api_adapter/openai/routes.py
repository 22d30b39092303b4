"""The OpenAI Batch API under /openai/v1: files and batches, for the official SDK.

An OpenAI batch is one of our batches: its lines are requests that the EXXA routes
show too (`metadata.custom_id` holds each line's custom_id). Errors come in OpenAI's
shape (see api_adapter/openai/errors.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api_adapter import responses
from api_adapter.deps import KeyDep, Services, ServicesDep
from api_adapter.idempotency import IdempotentRoute, idempotent
from api_adapter.limits import body_limit
from offpeak.clock import now
from offpeak.errors import Conflict, InvalidInput, ResultExpired
from offpeak.ids import new_id
from offpeak.ingest.openai_files import LineChecker, ingest_file
from offpeak.publish.openai_files import file_key, finalize_ready
from offpeak.publish.openai_objects import file_object, openai_batch_object, openai_status
from offpeak.schemas import (
    FileDeleted,
    FileList,
    FileObject,
    OpenAIBatchCreate,
    OpenAIBatchList,
    OpenAIBatchObject,
    Status,
    window_seconds,
)
from offpeak.schemas.openai import EXPIRES_AFTER_SECONDS
from offpeak.state import batches
from offpeak.state import openai as state
from offpeak.state.keys import require_balance
from offpeak.state.models import Batch, OpenAIFile

PREFIX = "/openai/v1"
router = APIRouter(
    prefix=PREFIX, tags=["openai"], responses=responses.OPENAI, route_class=IdempotentRoute
)


# --- files -----------------------------------------------------------------------------


def _size(upload: UploadFile) -> int:
    if upload.size is not None:
        return upload.size
    upload.file.seek(0, 2)
    size = upload.file.tell()
    upload.file.seek(0)
    return size


@router.post("/files", response_model=FileObject)
@idempotent
@body_limit("multipart", lambda settings: settings.openai_max_file_bytes)
async def upload_file(
    key: KeyDep,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="The JSONL file, one request per line.")],
    purpose: Annotated[str, Form(description="Must be `batch`.")],
    expires_anchor: Annotated[
        Literal["created_at"] | None,
        Form(alias="expires_after[anchor]", description="`created_at`, with the seconds."),
    ] = None,
    expires_seconds: Annotated[
        int | None,
        Form(
            alias="expires_after[seconds]",
            ge=EXPIRES_AFTER_SECONDS[0],
            le=EXPIRES_AFTER_SECONDS[1],
            description="Seconds after its upload that the file is deleted: 3600 to 2592000 "
            "(else OFFPEAK_RESULTS_RETENTION after its last batch ends).",
        ),
    ] = None,
) -> FileObject:
    """Upload a batch input file (streamed to object storage; lines are checked when a
    batch is created from it)."""
    if purpose != "batch":
        raise InvalidInput(
            f"purpose {purpose!r} is not supported here; upload batch input files "
            "with purpose 'batch'",
            code="invalid_purpose",
        )
    size, limit = _size(file), services.settings.openai_max_file_bytes
    if size > limit:
        raise HTTPException(
            413, f"the file has {size} bytes; files may have at most {limit} bytes: split it"
        )
    if size == 0:
        raise InvalidInput("the file is empty", code="empty_file")
    if (expires_anchor is None) != (expires_seconds is None):
        raise InvalidInput(
            "expires_after needs both expires_after[anchor] and expires_after[seconds]",
            code="invalid_expires_after",
        )
    created_at = now()
    row = OpenAIFile(
        id=new_id(),
        key_id=key.id,
        purpose="batch",
        filename=file.filename or "upload.jsonl",
        bytes=size,
        created_at=created_at,
        expires_at=created_at + expires_seconds if expires_seconds is not None else None,
    )
    row.storage_key = file_key(key.id, row.id)
    await file.seek(0)
    await run_in_threadpool(services.store.put_stream, row.storage_key, file.file)
    await run_in_threadpool(state.add_file, services.db, row)
    return file_object(row)


@router.get("/files", response_model=FileList)
def list_files(
    key: KeyDep,
    services: ServicesDep,
    after: Annotated[str | None, Query(description="List after this file id.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Files per page.")] = 10_000,
    order: Annotated[Literal["asc", "desc"], Query(description="By creation time.")] = "desc",
    purpose: Annotated[str | None, Query(description="Only files of this purpose.")] = None,
) -> FileList:
    """Your files, newest first unless `order=asc`."""
    rows = state.list_files(
        services.db, key.id, limit=limit + 1, after=after, order=order, purpose=purpose
    )
    page = rows[:limit]
    return FileList(
        data=[file_object(r) for r in page],
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=len(rows) > limit,
    )


@router.get("/files/{file_id}", response_model=FileObject)
def get_file(file_id: str, key: KeyDep, services: ServicesDep) -> FileObject:
    """One file's metadata."""
    return file_object(state.get_file(services.db, key.id, file_id))


@router.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, key: KeyDep, services: ServicesDep) -> FileDeleted:
    """Delete a file (batches created from it keep their requests)."""
    row = state.delete_file(services.db, key.id, file_id)
    services.store.delete(row.storage_key)
    return FileDeleted(id=row.id)


@router.get("/files/{file_id}/content", response_class=StreamingResponse)
def get_file_content(file_id: str, key: KeyDep, services: ServicesDep) -> StreamingResponse:
    """A file's bytes: an input file as uploaded, or a batch's output or error JSONL."""
    row = _unexpired(state.get_file(services.db, key.id, file_id))
    stream = services.store.open(row.storage_key)
    return StreamingResponse(
        iter(lambda: stream.read(1 << 16), b""),
        media_type="application/octet-stream",
        headers={"Content-Length": str(row.bytes)},
        background=BackgroundTask(stream.close),
    )


def _unexpired(row: OpenAIFile) -> OpenAIFile:
    if row.purged_at is not None:
        raise ResultExpired(f"file {row.id} has expired and its content has been deleted")
    return row


# --- batches ---------------------------------------------------------------------------


def _objects(services: Services, rows: list[Batch]) -> list[OpenAIBatchObject]:
    """The batches as OpenAI objects, as they stand (publishing writes their files)."""
    counts = batches.tallies(services.db, [b.id for b in rows])
    return [openai_batch_object(batch, counts[batch.id]) for batch in rows]


@router.post("/batches", response_model=OpenAIBatchObject)
@idempotent
def create_batch(
    create: OpenAIBatchCreate, key: KeyDep, services: ServicesDep
) -> OpenAIBatchObject:
    """Create a batch from an uploaded file. Every line is checked first: a 400 lists
    each problem with its line number, and then nothing is created."""
    require_balance(key, services.settings.min_balance_usd)
    source = _unexpired(state.get_file(services.db, key.id, create.input_file_id))
    if source.purpose != "batch":
        raise InvalidInput(
            f"file {source.id} has purpose {source.purpose!r}; a batch reads a file "
            "uploaded with purpose 'batch'",
            code="invalid_input_file",
        )
    settings = services.settings
    checker = LineChecker(
        create.endpoint,
        services.registry,
        max_lines=settings.openai_max_batch_lines,
        max_line_bytes=settings.max_body_bytes,
    )
    created_at = now()
    expires_at = created_at + window_seconds(create.completion_window)
    stream = services.store.open(source.storage_key)
    try:
        ingested = ingest_file(
            services.store,
            stream,
            checker,
            key_id=key.id,
            created_at=created_at,
            expires_at=expires_at,
        )
    finally:
        stream.close()
    batch = state.create_batch(
        services.db,
        state.NewBatch(
            id=new_id(),
            key_id=key.id,
            input_file_id=source.id,
            endpoint=create.endpoint,
            model=ingested.model,
            completion_window=create.completion_window,
            metadata=create.metadata or {},
            created_at=created_at,
            expires_at=expires_at,
            requests=ingested.requests,
            retention_seconds=create.output_expires_after.seconds
            if create.output_expires_after
            else None,
        ),
    )
    services.nudge()
    return _objects(services, [batch])[0]


@router.get("/batches", response_model=OpenAIBatchList)
def list_batches(
    key: KeyDep,
    services: ServicesDep,
    after: Annotated[str | None, Query(description="List after this batch id.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Batches per page.")] = 20,
) -> OpenAIBatchList:
    """Your OpenAI batches, newest first."""
    rows = batches.list_batches(
        services.db, key.id, after=after, limit=limit + 1, order="desc", openai=True
    )
    page = _objects(services, rows[:limit])
    return OpenAIBatchList(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=len(rows) > limit,
    )


@router.get("/batches/{batch_id}", response_model=OpenAIBatchObject)
def get_batch(batch_id: str, key: KeyDep, services: ServicesDep) -> OpenAIBatchObject:
    """One batch: status, request counts, and its output and error files once ended."""
    return _objects(services, [batches.get_batch(services.db, key.id, batch_id, openai=True)])[0]


@router.post("/batches/{batch_id}/cancel", response_model=OpenAIBatchObject)
def cancel_batch(batch_id: str, key: KeyDep, services: ServicesDep) -> OpenAIBatchObject:
    """Cancel a batch: requests not yet run are cancelled, finished results are kept in
    its output file; it is `cancelling` until that file is written."""
    batch = batches.get_batch(services.db, key.id, batch_id, openai=True)
    tally = batches.tallies(services.db, [batch_id])[batch_id]
    if batch.status == Status.CANCELLED:  # cancelled before, through either dialect
        return openai_batch_object(batch, tally)
    if tally.pending == 0:
        raise Conflict(
            f"batch {batch_id} is {openai_status(batch, tally)}; only a batch in progress "
            "can be cancelled",
            code="batch_not_cancellable",
        )
    try:
        batch = batches.cancel_batch(services.db, key.id, batch_id, now())
    except Conflict:
        batch = batches.get_batch(services.db, key.id, batch_id, openai=True)
        if batch.status != Status.CANCELLED:
            raise
        # Cancelled by another call meanwhile: the same outcome.
    # OpenAI answers a cancel with `cancelling`. When nothing of the batch is still
    # running, publishing writes its files now, so that the next read shows it
    # `cancelled` with its error file; else the scheduler's publishing does, later.
    cancelling = openai_batch_object(batch, batches.tallies(services.db, [batch_id])[batch_id])
    finalize_ready(services.db, services.store, [batch_id])
    return cancelling
