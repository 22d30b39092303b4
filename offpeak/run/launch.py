"""Launching a job: its manifest written to object storage, its requests claimed."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from offpeak.ids import new_id
from offpeak.plan.pending import PendingGroup
from offpeak.run.chunk_files import manifest_key
from offpeak.schemas import JobStatus, ManifestRow
from offpeak.schemas.arrow import arrow_schema
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.models import Job
from offpeak.storage import ObjectStore

MANIFEST_SCHEMA = arrow_schema(ManifestRow)


def encode_manifest(rows: list[tuple[str, str]]) -> bytes:
    table = pa.Table.from_pydict(
        {"id": [r[0] for r in rows], "segment": [r[1] for r in rows]}, schema=MANIFEST_SCHEMA
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_manifest(store: ObjectStore, job: Job) -> list[ManifestRow]:
    table = pq.read_table(pa.BufferReader(store.get(job.manifest_key)), schema=MANIFEST_SCHEMA)
    return [ManifestRow.model_validate(row) for row in table.to_pylist()]


def open_job(
    db: Database,
    store: ObjectStore,
    group: PendingGroup,
    *,
    max_requests: int,
    deployment: str,
    at: int,
    expires_between: tuple[int, int] | None = None,
) -> Job | None:
    """Write a manifest of the oldest pending requests of ``group`` and claim them for a
    new job. The manifest is written first: a crash before the claim leaves an unused
    manifest, never a claimed request without one. None when nothing was claimable."""
    candidates = state.pending_requests(db, group.models, max_requests, expires_between)
    if not candidates:
        return None
    job_id = new_id()
    key = manifest_key(job_id)
    store.create(key, encode_manifest(candidates))
    job = Job(
        id=job_id,
        model=group.engine_model,
        deployment=deployment,
        status=JobStatus.CREATED,
        manifest_key=key,
        request_count=len(candidates),
        attempts=0,
        created_at=at,
        prompt_tokens=0,
        completion_tokens=0,
    )
    return job if state.create_job(db, job, [c[0] for c in candidates], at) else None
