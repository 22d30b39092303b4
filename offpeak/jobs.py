"""Jobs: pending work grouped by engine, manifests written, requests claimed."""

from __future__ import annotations

import io
from collections import defaultdict

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
from offpeak.work import PendingGroup, PendingUnit

MANIFEST_SCHEMA = arrow_schema(ManifestRow)


def pending_groups(db: Database, registry: ModelRegistry) -> list[PendingGroup]:
    """Sealed, registered requests per engine model, in units by minute of deadline.
    Models no longer served are left out (their requests wait, and expire, rather than
    crash the scheduler). A request without a token estimate counts as a full context."""
    units: dict[str, dict[int, list[PendingUnit]]] = defaultdict(lambda: defaultdict(list))
    models: dict[str, set[str]] = defaultdict(set)
    for row in state.pending_work(db):
        if row.model not in registry:
            continue
        engine = registry.engine_model(row.model)
        context = registry.get(engine).context_length
        tokens = min(row.est_tokens + row.unestimated * context, row.count * context)
        models[engine].add(row.model)
        minute = row.first_expires_at - row.first_expires_at % 60
        units[engine][minute].append(
            PendingUnit(row.first_expires_at, row.last_expires_at, row.count, tokens)
        )
    return [
        PendingGroup(engine, tuple(sorted(models[engine])), tuple(_merged(units[engine])))
        for engine in sorted(units)
    ]


def _merged(by_minute: dict[int, list[PendingUnit]]) -> list[PendingUnit]:
    """One unit per minute (stand-ins of one engine share it), earliest first."""
    return [
        PendingUnit(
            min(u.first_expires_at for u in parts),
            max(u.last_expires_at for u in parts),
            sum(u.count for u in parts),
            sum(u.tokens for u in parts),
        )
        for _, parts in sorted(by_minute.items())
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
        status="created",
        manifest_key=key,
        request_count=len(candidates),
        attempts=0,
        created_at=at,
        prompt_tokens=0,
        completion_tokens=0,
    )
    return job if state.create_job(db, job, [c[0] for c in candidates], at) else None
