"""API objects built from state rows; bodies and results come from their Parquet files."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from offpeak.ingest.segments import read_bodies
from offpeak.run.chunk_files import read_results
from offpeak.schemas import (
    BatchObject,
    CarbonObject,
    ErrorInfo,
    RequestCounts,
    RequestObject,
    StatusObject,
)
from offpeak.schemas.exxa import BatchUsage
from offpeak.state.models import Batch, Request
from offpeak.storage import ObjectStore


def status_object(row: Request | Batch) -> StatusObject:
    return StatusObject.of(row)


def request_object(row: Request, body: str | None, result: str | None) -> RequestObject:
    return RequestObject(
        **status_object(row).model_dump(),
        metadata=row.meta,
        request_body=json.loads(body) if body else None,
        result_body=json.loads(result) if result else None,
        error=ErrorInfo(code=row.error_code, message=row.error_message or "")
        if row.error_code
        else None,
        completion_window=row.completion_window,
        webhook=row.webhook,
        batch_id=row.batch_id,
        carbon=request_carbon(row),
    )


def request_carbon(row: Request) -> CarbonObject | None:
    """The request's share of its job's footprint, once accounted."""
    return CarbonObject.model_validate_json(row.carbon) if row.carbon else None


def request_objects(store: ObjectStore, rows: Sequence[Request]) -> list[RequestObject]:
    """Full objects for ``rows``: each needed file read once, only for their ids."""
    segments: dict[str, list[str]] = defaultdict(list)
    chunks: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.purged_at is not None:
            continue  # retention removed its body and result: they show as null
        if row.body is None and row.segment:
            segments[row.segment].append(row.id)
        if row.result_key:
            chunks[row.result_key].append(row.id)
    bodies: dict[str, str] = {}
    for segment, ids in segments.items():
        bodies.update(read_bodies(store, segment, ids))
    results = {
        r.id: r.result_body for key, ids in chunks.items() for r in read_results(store, key, ids)
    }
    return [
        request_object(row, row.body or bodies.get(row.id), results.get(row.id)) for row in rows
    ]


def batch_object(
    batch: Batch,
    counts: RequestCounts,
    carbon: CarbonObject | None = None,
    usage: BatchUsage | None = None,
    expected: tuple[int | None, int | None] = (None, None),
) -> BatchObject:
    """``expected``: the plan's expected start and completion (offpeak.state.expectations)."""
    return BatchObject(
        **status_object(batch).model_dump(),
        metadata=batch.meta,
        webhook=batch.webhook,
        request_counts=counts,
        usage=usage or BatchUsage(),
        carbon=carbon,
        expected_start_at=expected[0],
        expected_completion_at=expected[1],
    )
