"""Dataset ingestion: a file becomes one batch of requests, sealed in segments as it is read.

Two passes over the file, a block at a time. The first checks every row and the id
column's uniqueness, so a bad dataset is refused whole before anything is written.
The second builds the requests' bodies column-wise, writes them as Parquet segments
and registers them in the state database already sealed, in bulk, one transaction per
segment. Memory holds one segment's rows (and, with an id column, the ids).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from sqlalchemy import delete, update

from offpeak.catalog.models import ModelSpec
from offpeak.clock import now
from offpeak.errors import DatasetError
from offpeak.ids import new_id, new_ids
from offpeak.ingest.datasets import rows as dataset_rows
from offpeak.ingest.datasets.sources import DatasetFile
from offpeak.ingest.rows import plain, request_table
from offpeak.ingest.segments import SEGMENT_SCHEMA, encode_segment_table, segment_key
from offpeak.schemas import DatasetMapping, Status, window_seconds
from offpeak.state.db import Database
from offpeak.state.models import Batch, Request
from offpeak.state.requests import insert_requests
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    batch: Batch
    rows: int
    segments: list[str]


def read_schema(plan: dataset_rows.Plan, schema: pa.Schema, kind: str) -> pa.Schema:
    """The columns to read and, for text formats, the types to parse them as: text as
    text (a CSV id of digits stays as written), parameters as numbers."""
    fields = []
    for column in plan.columns:
        kind_of = schema.field(column).type
        if column in plan.parameters.values():
            kind_of = pa.float64()
        elif kind == "csv":
            kind_of = pa.string()
        fields.append(pa.field(column, kind_of))
    return pa.schema(fields)


def rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one shorter) from batches of any size."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _csv_schema(schema: pa.Schema, numeric: set[str]) -> pa.Schema:
    """CSV holds text: a column is text unless it feeds a parameter, whatever the reader
    guessed from the first block (digits, or nothing at all below the header)."""
    fields = []
    for field in schema:
        if field.name not in numeric:
            field = field.with_type(pa.string())
        elif pa.types.is_null(field.type):
            field = field.with_type(pa.float64())
        fields.append(field)
    return pa.schema(fields)


def check_dataset(
    dataset: DatasetFile, mapping: DatasetMapping, spec: ModelSpec, rows: int
) -> tuple[dataset_rows.Plan, pa.Schema, int]:
    """First pass: the plan, the schema to read, and the number of rows; raises
    :class:`DatasetError` naming the first bad column or row."""
    schema = dataset.schema()
    if dataset.kind == "csv":
        schema = _csv_schema(schema, set(mapping.parameters().values()))
    plan = dataset_rows.plan(mapping, schema, spec)
    columns = read_schema(plan, schema, dataset.kind)
    # A prompt column the file's statistics prove filled is not read twice.
    text = not (mapping.prompt_column and dataset.never_empty(mapping.prompt_column))
    checked = columns if text else pa.schema([f for f in columns if f.name != plan.text_column])
    hashes: list[np.ndarray] = []  # 8 bytes a row: memory stays near flat
    count = 0
    known = dataset.rows_if_known()
    if not checked.names and known is not None:
        count = known  # nothing left to check row by row
    else:
        for batch in dataset.batches(checked, rows):
            batch_ids = dataset_rows.check(batch, plan, count, text=text)
            if mapping.id_column is not None:
                hashes.append(dataset_rows.id_hashes(batch_ids))
            count += batch.num_rows
    if count == 0:
        raise DatasetError(f"dataset {dataset.label} has no rows", code="dataset_empty")
    if hashes:
        suspects = dataset_rows.colliding(np.concatenate(hashes))
        del hashes
        if suspects.size and (error := _duplicate(dataset, plan, columns, rows, suspects)):
            raise error
    return plan, columns, count


def _duplicate(
    dataset: DatasetFile,
    plan: dataset_rows.Plan,
    columns: pa.Schema,
    rows: int,
    suspects: np.ndarray,
) -> DatasetError | None:
    """Read the ids again, keeping those whose hash is shared: a real duplicate, or (one
    chance in billions) two ids with the same hash."""
    id_column = pa.schema([columns.field(str(plan.mapping.id_column))])
    values, numbers = [], []
    offset = 0
    for batch in dataset.batches(id_column, rows):
        ids = dataset_rows.custom_ids(pl.DataFrame(pl.from_arrow(batch)), plan, offset)
        keep = pl.Series(np.isin(dataset_rows.id_hashes(ids), suspects))
        values.append(ids.filter(keep))
        numbers.append(pl.int_range(offset, offset + len(ids), eager=True).filter(keep))
        offset += batch.num_rows
    return dataset_rows.first_duplicate(pl.concat(values), pl.concat(numbers))


def _batch_metadata(dataset: DatasetFile, mapping: DatasetMapping, count: int) -> dict[str, Any]:
    described = mapping.model_dump(exclude_none=True, exclude={"name", "format"})
    meta: dict[str, Any] = {
        "dataset": {
            "source": dataset.location.rsplit("/", 1)[-1]
            if not dataset.location.startswith("s3://")
            else dataset.location,
            "format": dataset.kind,
            "rows": count,
            "mapping": described,
        }
    }
    if mapping.name:
        meta["name"] = mapping.name
    return meta


def ingest_dataset(
    db: Database,
    store: ObjectStore,
    dataset: DatasetFile,
    mapping: DatasetMapping,
    *,
    key_id: str,
    spec: ModelSpec,
    segment_rows: int,
    at: int | None = None,
    source_name: str | None = None,
) -> Ingested:
    """Turn ``dataset`` into one new batch of ``key_id``'s requests, all rows or none.

    ``spec``: the model's, as offpeak.ingest.admit.admit returned it for the mapping's
    model. ``source_name`` replaces the file's name in the batch metadata (an uploaded
    file's temporary path means nothing to its owner).
    """
    plan, columns, count = check_dataset(dataset, mapping, spec, segment_rows)
    created = now() if at is None else at
    expires = created + window_seconds(mapping.completion_window)
    meta = _batch_metadata(dataset, mapping, count)
    if source_name:
        meta["dataset"]["source"] = source_name
    # `validating` until every row is in: the scheduler leaves its requests alone and
    # the batch cannot publish early.
    batch = Batch(
        id=new_id(),
        key_id=key_id,
        status=Status.VALIDATING.value,
        meta=meta,
        webhook=None,
        created_at=created,
        expires_at=expires,
        in_progress_at=None,
        ended_at=None,
    )
    with db.session(write=True) as session:
        session.add(batch)
    segments: list[str] = []
    offset = 0
    # Workers write each segment and register its rows while the next one is built:
    # Arrow, polars and SQLite all release the GIL. Two segments at most are in flight.
    with ThreadPoolExecutor(2, thread_name_prefix="offpeak-dataset") as workers:
        pending: deque[Future[None]] = deque()
        try:
            for table in rebatch(dataset.batches(columns, segment_rows), segment_rows):
                # String views: no copy out of polars (the segment writer takes them).
                built = dataset_rows.build(table, plan, offset).to_arrow(
                    compat_level=pl.CompatLevel.newest()
                )
                segment = segment_key(now())
                # Ascending, so id order is row order (see offpeak.ids.new_ids).
                rows = request_table(
                    ids=new_ids(table.num_rows),
                    key_id=key_id,
                    batch_id=batch.id,
                    model=mapping.model,
                    completion_window=mapping.completion_window,
                    metadata=built["metadata"].cast(pa.string()).combine_chunks(),
                    segment=segment,
                    created_at=created,
                    expires_at=expires,
                    est_tokens=built["est_tokens"].combine_chunks(),
                )
                segments.append(segment)
                while len(pending) >= 2:
                    pending.popleft().result()
                pending.append(workers.submit(_persist, db, store, segment, rows, built))
                offset += table.num_rows
            while pending:
                pending.popleft().result()
        except BaseException:
            for future in pending:
                future.cancel() or future.exception()
            _discard(db, store, batch.id, segments)
            raise
    with db.session(write=True) as session:
        session.execute(
            update(Batch).where(Batch.id == batch.id).values(status=Status.REGISTERED.value)
        )
    batch.status = Status.REGISTERED.value
    return Ingested(batch, offset, segments)


_SEGMENT_VIEWS = SEGMENT_SCHEMA.set(
    SEGMENT_SCHEMA.get_field_index("request_body"),
    pa.field("request_body", pa.string_view(), nullable=False),
)


def _persist(
    db: Database, store: ObjectStore, segment: str, rows: pa.Table, built: pa.Table
) -> None:
    """Write one segment, then register its rows (never the other way round). The key
    and the batch exist (this ingest made the batch): no foreign key checks."""
    store.create(segment, encode_segment_table(_segment(rows, built)))
    insert_requests(db, rows, foreign_keys=False)


def _segment(rows: pa.Table, built: pa.Table) -> pa.Table:
    """The segment of a table of new requests and their bodies."""
    return pa.table(
        [
            rows["id"],
            *(plain(rows[name]) for name in ("key_id", "model", "created_at", "expires_at")),
            built["request_body"],
            rows["metadata"],
        ],
        schema=_SEGMENT_VIEWS,
    )


def _discard(db: Database, store: ObjectStore, batch_id: str, segments: list[str]) -> None:
    """Undo a dataset that failed half way: its requests, its batch, its segments."""
    try:
        with db.session(write=True) as session:
            session.execute(delete(Request).where(Request.batch_id == batch_id))
            session.execute(delete(Batch).where(Batch.id == batch_id))
        for key in segments:
            store.delete(key)
    except Exception as exc:  # the original error is the one to report
        log.error("could not discard the failed dataset batch %s: %s", batch_id, exc)
