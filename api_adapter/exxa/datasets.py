"""Dataset submission: a Parquet, CSV or JSONL file (uploaded, or on S3) as one batch."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api_adapter import responses
from api_adapter.deps import KeyDep, ServicesDep
from api_adapter.idempotency import IdempotentRoute, idempotent
from api_adapter.limits import body_limit
from offpeak.clock import now
from offpeak.errors import DatasetError
from offpeak.ingest.admit import admit
from offpeak.ingest.datasets import (
    DatasetFile,
    S3Access,
    check_source,
    format_of,
    ingest_dataset,
)
from offpeak.publish.objects import batch_object
from offpeak.schemas import BatchObject, DatasetFormat, DatasetMapping
from offpeak.state import batches as state
from offpeak.state.keys import require_balance
from offpeak.state.models import ApiKey

PATH = "/v1/datasets"
router = APIRouter(
    prefix=PATH, tags=["datasets"], responses=responses.EXXA, route_class=IdempotentRoute
)

SOURCE_DESCRIPTION = (
    "`s3://bucket/key` of a dataset, instead of an uploaded body: under one of the locations "
    "this API key may read (OFFPEAK_DATASET_SOURCES), never in the service's own storage; "
    "else 403 `dataset_source_forbidden`."
)
_MEDIA: dict[str, DatasetFormat] = {
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}
_FILENAME = re.compile(r'filename="?([^";]+)"?')


class DatasetQuery(DatasetMapping):
    """The query string: the column mapping, and the dataset's location when not sent."""

    source: str | None = Field(None, description=SOURCE_DESCRIPTION)

    def mapping(self) -> DatasetMapping:
        return DatasetMapping.model_validate(
            self.model_dump(exclude={"source"}, exclude_unset=True)
        )


async def _funded_key(key: KeyDep, services: ServicesDep) -> ApiKey:
    # A dependency, so a key short of credits hears 402 before its query is validated.
    require_balance(key, services.settings.min_balance_usd)
    return key


FundedKeyDep = Annotated[ApiKey, Depends(_funded_key)]


async def _receive(request: Request, limit: int) -> Path:
    """The request body in a temporary file, counted against ``limit`` as it arrives."""
    fd, name = tempfile.mkstemp(prefix="offpeak-dataset-")
    path = Path(name)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise HTTPException(413, f"dataset exceeds the {limit}-byte limit")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if received == 0:
        path.unlink(missing_ok=True)
        raise DatasetError(
            "no dataset: send the file as the request body, or give source=s3://...",
            code="dataset_empty",
        )
    return path


def _format_of_name(name: str) -> DatasetFormat | None:
    try:
        return format_of(name)
    except DatasetError:
        return None


@router.post(
    "",
    status_code=201,
    response_model=BatchObject,
    openapi_extra={
        "requestBody": {
            "description": "The dataset file (Parquet, CSV or JSONL), unless `source` is given.",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
    },
)
@idempotent
@body_limit("raw", lambda settings: settings.max_dataset_bytes)
async def submit_dataset(
    request: Request,
    key: FundedKeyDep,
    services: ServicesDep,
    query: Annotated[DatasetQuery, Query()],
) -> BatchObject:
    """Submit a dataset as one batch: each row becomes a request (column mapping in the query)."""
    mapping = query.mapping()
    spec = admit(services.registry, mapping.model, "chat")
    settings = services.settings
    source = query.source
    name: str | None = None
    kind: DatasetFormat | None = mapping.format
    if source is not None:
        check_source(source, key.id, settings.dataset_sources, settings.storage_url)
        kind = kind or _format_of_name(source)
        fd, temporary = tempfile.mkstemp(prefix="offpeak-dataset-")
        os.close(fd)  # filled from S3 off the event loop
        local = Path(temporary)
    else:
        disposition = _FILENAME.search(request.headers.get("content-disposition", ""))
        name = disposition.group(1).rsplit("/", 1)[-1] if disposition else None
        local = await _receive(request, settings.max_dataset_bytes)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        kind = kind or _MEDIA.get(media) or (_format_of_name(name) if name else None)

    def ingest() -> BatchObject:
        # Opening the file reads it (S3 included): all of it off the event loop.
        if source is not None:
            # One local copy, read by every pass: the object cannot change between the
            # checks of its bytes and their parsing.
            with local.open("wb") as into:
                S3Access(settings.s3_endpoint_url, settings.s3_region).download(
                    source, into, settings.max_dataset_bytes
                )
        dataset = DatasetFile(
            str(local), kind, max_bytes=settings.max_dataset_bytes, label=source or name or "upload"
        )
        ingested = ingest_dataset(
            services.db,
            services.store,
            dataset,
            mapping,
            key_id=key.id,
            spec=spec,
            segment_rows=settings.seal_rows,
            at=now(),
            source_name=source or name or "upload",
        )
        counts = state.request_counts(services.db, [ingested.batch.id])
        services.nudge()
        return batch_object(ingested.batch, counts[ingested.batch.id])

    try:
        return await run_in_threadpool(ingest)
    finally:
        local.unlink(missing_ok=True)
