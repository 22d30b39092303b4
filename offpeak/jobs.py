"""Jobs: pending work grouped by engine, manifests written, requests claimed."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from offpeak.chunks import manifest_key
from offpeak.ids import new_id
from offpeak.registry import ModelRegistry
from offpeak.schemas import ManifestRow
from offpeak.segments import arrow_schema
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.models import Job
from offpeak.storage import ObjectStore

MANIFEST_SCHEMA = arrow_schema(ManifestRow)


@dataclass(frozen=True)
class PendingGroup:
    """Requests waiting for the same engine (a model and its stand-ins)."""

    engine_model: str
    models: tuple[str, ...]
    count: int


def pending_groups(db: Database, registry: ModelRegistry) -> list[PendingGroup]:
    """Sealed, registered requests per engine model. Models no longer served are left
    out (their requests wait, and expire, rather than crash the scheduler)."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for model, count in state.pending_counts(db).items():
        if model in registry:
            counts[registry.engine_model(model)][model] = count
    return [
        PendingGroup(engine, tuple(sorted(models)), sum(models.values()))
        for engine, models in sorted(counts.items())
    ]


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
) -> Job | None:
    """Write a manifest of the oldest pending requests of ``group`` and claim them for a
    new job. The manifest is written first: a crash before the claim leaves an unused
    manifest, never a claimed request without one. None when nothing was claimable."""
    candidates = state.pending_requests(db, group.models, max_requests)
    if not candidates:
        return None
    job_id = new_id()
    key = manifest_key(job_id)
    store.create(key, encode_manifest(candidates))
    job = Job(
        id=job_id,
        model=group.engine_model,
        deployment=deployment,
        status="created",
        manifest_key=key,
        request_count=len(candidates),
        attempts=0,
        created_at=at,
        prompt_tokens=0,
        completion_tokens=0,
    )
    return job if state.create_job(db, job, [c[0] for c in candidates], at) else None
