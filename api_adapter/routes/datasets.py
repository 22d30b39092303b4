"""Dataset submission: a Parquet, CSV or JSONL file (uploaded, or on S3) as one batch."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api_adapter.deps import KeyDep, ServicesDep
from api_adapter.idempotency import IdempotentRoute, idempotent
from offpeak.clock import now
from offpeak.errors import DatasetError
from offpeak.ingest.datasets import DatasetFile, S3Access, format_of, ingest_dataset
from offpeak.publish.objects import batch_object
from offpeak.schemas import BatchObject, DatasetFormat, DatasetMapping
from offpeak.state import batches as state
from offpeak.state.keys import require_balance

PATH = "/v1/datasets"
router = APIRouter(prefix=PATH, tags=["datasets"], route_class=IdempotentRoute)

SOURCE_DESCRIPTION = (
    "`s3://bucket/key` of a dataset the service reads from its object store's S3 endpoint, "
    "instead of an uploaded body."
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


def _query_parameters() -> list[dict[str, Any]]:
    """The mapping's fields as OpenAPI query parameters (the route parses them itself)."""
    schema = DatasetMapping.model_json_schema()
    required = set(schema.get("required", []))
    listed: list[dict[str, Any]] = [
        {"name": "source", "in": "query", "description": SOURCE_DESCRIPTION}
    ]
    for name, prop in schema["properties"].items():
        listed.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": prop.get("description", prop.get("title", name)),
                "schema": {k: v for k, v in prop.items() if k not in ("description", "title")},
            }
        )
    for item in listed:
        item.setdefault("schema", {"type": "string"})
    return listed


def _mapping(request: Request) -> DatasetMapping:
    params = request.query_params
    data: dict[str, Any] = {
        name: params.getlist(name) if name == "parameter_columns" else params[name]
        for name in params
        if name != "source"
    }
    try:
        return DatasetMapping.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": ("query", *err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        raise RequestValidationError(errors) from None


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
        "parameters": _query_parameters(),
        "requestBody": {
            "description": "The dataset file (Parquet, CSV or JSONL), unless `source` is given.",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
    },
)
@idempotent
async def submit_dataset(request: Request, key: KeyDep, services: ServicesDep) -> BatchObject:
    """Submit a dataset as one batch: each row becomes a request (column mapping in the query)."""
    require_balance(key, services.settings.min_balance_usd)
    mapping = _mapping(request)
    spec = services.registry.get(mapping.model)
    settings = services.settings
    source = request.query_params.get("source")
    upload: Path | None = None
    name: str | None = None
    kind: DatasetFormat | None = mapping.format
    if source is not None:
        if not source.startswith("s3://"):
            raise DatasetError(
                f"source {source!r} is not an s3:// URI; upload a local file as the body",
                code="dataset_invalid_source",
            )
    else:
        disposition = _FILENAME.search(request.headers.get("content-disposition", ""))
        name = disposition.group(1).rsplit("/", 1)[-1] if disposition else None
        upload = await _receive(request, settings.max_dataset_bytes)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        kind = kind or _MEDIA.get(media) or (_format_of_name(name) if name else None)

    def ingest() -> BatchObject:
        # Opening the file reads it (S3 included): all of it off the event loop.
        s3 = S3Access(settings.s3_endpoint_url, settings.s3_region)
        dataset = DatasetFile(source or str(upload), kind, s3)
        ingested = ingest_dataset(
            services.db,
            services.store,
            dataset,
            mapping,
            key_id=key.id,
            max_completion_tokens=spec.max_completion_tokens,
            segment_rows=settings.seal_rows,
            at=now(),
            source_name=name or ("upload" if upload is not None else None),
        )
        counts = state.request_counts(services.db, [ingested.batch.id])
        return batch_object(ingested.batch, counts[ingested.batch.id])

    try:
        return await run_in_threadpool(ingest)
    finally:
        if upload is not None:
            upload.unlink(missing_ok=True)
