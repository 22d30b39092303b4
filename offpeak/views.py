"""API objects built from state rows; bodies and results come from their Parquet files."""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence

from offpeak.chunks import read_results
from offpeak.schemas import (
    BatchObject,
    ErrorInfo,
    RequestCounts,
    RequestObject,
    Status,
    StatusObject,
)
from offpeak.segments import read_bodies
from offpeak.state.models import Batch, Request
from offpeak.storage import ObjectStore


def status_object(row: Request | Batch) -> StatusObject:
    return StatusObject(
        id=row.id,
        status=Status(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        in_progress_at=row.in_progress_at,
        ended_at=row.ended_at,
    )


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
    )


class FileReader:
    """Reads bodies from segments and results from chunk files, keeping the last few
    files decoded, so a publisher walking a batch page by page reads each file once."""

    def __init__(self, store: ObjectStore, capacity: int = 4) -> None:
        self.store = store
        self.capacity = capacity
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()

    def _file(self, key: str, load: Callable[[str], dict[str, str]]) -> dict[str, str]:
        if key in self._files:
            self._files.move_to_end(key)
        else:
            self._files[key] = load(key)
            if len(self._files) > self.capacity:
                self._files.popitem(last=False)
        return self._files[key]

    def bodies(self, segment: str) -> dict[str, str]:
        return self._file(segment, lambda k: read_bodies(self.store, k, None))

    def results(self, chunk: str) -> dict[str, str]:
        return self._file(
            chunk, lambda k: {r.id: r.result_body for r in read_results(self.store, k)}
        )


def request_objects(
    store: ObjectStore, rows: Sequence[Request], reader: FileReader | None = None
) -> list[RequestObject]:
    """Full objects for ``rows``, reading each needed file once."""
    if reader is None:
        return _read_only_needed(store, rows)
    return [
        request_object(
            row,
            row.body or (reader.bodies(row.segment).get(row.id) if row.segment else None),
            reader.results(row.result_key).get(row.id) if row.result_key else None,
        )
        for row in rows
    ]


def _read_only_needed(store: ObjectStore, rows: Sequence[Request]) -> list[RequestObject]:
    # For a handful of rows (a GET): read just their ids from each file.
    segments: dict[str, list[str]] = defaultdict(list)
    chunks: dict[str, list[str]] = defaultdict(list)
    for row in rows:
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


def batch_object(batch: Batch, counts: RequestCounts) -> BatchObject:
    return BatchObject(
        **status_object(batch).model_dump(),
        metadata=batch.meta,
        webhook=batch.webhook,
        request_counts=counts,
    )
