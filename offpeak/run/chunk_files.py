"""Chunk result files: each inference chunk's outcomes as one Parquet object.

A chunk's file is written (create-if-absent) before the state is updated from it, so
a restarted job finds finished chunks, applies them again (a no-op once applied) and
runs only what has no file yet: nothing lost, nothing run twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offpeak.catalog.models import ModelRegistry
from offpeak.engine import EngineResult
from offpeak.schemas import ResultRow, Status
from offpeak.schemas.arrow import arrow_schema
from offpeak.state.jobs import Outcome
from offpeak.storage import ObjectStore

RESULT_SCHEMA = arrow_schema(ResultRow)


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.parquet"


def chunk_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/chunk-{index:05d}.parquet"


def result_rows(
    results: Sequence[EngineResult], models: dict[str, str], registry: ModelRegistry
) -> list[ResultRow]:
    """Rows for a chunk file from the engine's results; ``models`` maps id -> requested model.

    A completed request costs its usage at the requested model's prices; a failed one
    costs nothing.
    """
    rows = []
    for result in results:
        completed = result.error is None
        cost = (
            registry.get(models[result.id]).cost_usd(result.prompt_tokens, result.completion_tokens)
            if completed
            else 0.0
        )
        rows.append(
            ResultRow(
                id=result.id,
                status=Status.COMPLETED if completed else Status.FAILED,
                result_body=json.dumps(result.result_body, separators=(",", ":"))
                if completed
                else "",
                error_code="" if result.error is None else result.error.code,
                error_message="" if result.error is None else result.error.message,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost_usd=cost,
            )
        )
    return rows


def encode_results(rows: Sequence[ResultRow]) -> bytes:
    """Parquet bytes of a chunk's rows (pure: no I/O)."""
    columns = {name: [getattr(r, name) for r in rows] for name in RESULT_SCHEMA.names}
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(columns, schema=RESULT_SCHEMA), sink, compression="zstd")
    return sink.getvalue()


def read_results(store: ObjectStore, key: str, ids: Iterable[str] | None = None) -> list[ResultRow]:
    """A chunk file's rows, optionally only those with the given ids."""
    table = pq.read_table(pa.BufferReader(store.get(key)), schema=RESULT_SCHEMA)
    if ids is not None:
        table = table.filter(pc.is_in(table["id"], value_set=pa.array(list(ids), pa.string())))
    return [ResultRow.model_validate(row) for row in table.to_pylist()]


def outcomes(rows: Sequence[ResultRow]) -> list[Outcome]:
    """What the state database records of each row."""
    return [
        Outcome(
            id=row.id,
            status=Status(row.status),
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cost_usd=Decimal(str(row.cost_usd)),
            error_code=row.error_code or None,
            error_message=row.error_message or None,
        )
        for row in rows
    ]
