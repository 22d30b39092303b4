"""The one builder of request rows: every ingest path hands the state database an
Arrow table of :data:`REQUEST_ROWS` (offpeak.state.requests.insert_requests).

Columns are named as the database names them (``metadata``, JSON text); a single
request's row in Python (:func:`request_row`) uses the mapped attribute names of
``offpeak.state.models.Request`` (``meta``, a dict), as the ORM and the seal writer
read it. A value every row shares (a dataset's key, batch, model, deadline) is one
run-end encoded run, not a copy per row: the insert binds it once. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from offpeak.ids import new_id
from offpeak.schemas import RequestCreate, Status, window_seconds

REQUEST_ROWS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("key_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("completion_window", pa.string(), nullable=False),
        pa.field("webhook", pa.string()),
        pa.field("metadata", pa.string(), nullable=False),  # JSON text of an object
        pa.field("body", pa.string()),  # null once sealed in its segment
        pa.field("segment", pa.string()),
        pa.field("created_at", pa.int64(), nullable=False),
        pa.field("expires_at", pa.int64(), nullable=False),
        pa.field("est_tokens", pa.int64()),
    ]
)
COLUMNS = tuple(REQUEST_ROWS.names)
# A Python row names its metadata as the ORM attribute does; every other name is shared.
ATTRIBUTES = tuple("meta" if name == "metadata" else name for name in COLUMNS)

Values = Any  # a scalar shared by every row, or a sequence / Arrow array with one per row


def metadata_json(meta: dict[str, Any]) -> str:
    """Metadata as stored: compact JSON text, as a dataset's rows (polars) and SQLite's
    bulk insert (`json_each` hands values back compact) write it, so the stored text is
    the same whichever path made the request."""
    return json.dumps(meta, separators=(",", ":"))


def shared(value: Any, kind: pa.DataType, count: int) -> pa.Array:
    """``value`` for ``count`` rows as one run: constant memory, and the insert binds it
    once."""
    return pa.RunEndEncodedArray.from_arrays(
        pa.array([count] if count else [], pa.int32()),
        pa.array([value] if count else [], kind),
    )


def is_shared(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether every row holds the same value, as one run (see :func:`shared`)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return (
        pa.types.is_run_end_encoded(column.type)
        and len(chunks) == 1
        and len(chunks[0].run_ends) <= 1
    )


def plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column with its shared run, if any, written out row by row (for files)."""
    return pc.run_end_decode(column) if pa.types.is_run_end_encoded(column.type) else column


def request_table(
    *,
    ids: pa.Array | Sequence[str],
    key_id: Values,
    model: Values,
    completion_window: Values,
    created_at: Values,
    expires_at: Values,
    metadata: Values,
    est_tokens: Values,
    batch_id: Values = None,
    webhook: Values = None,
    body: Values = None,
    segment: Values = None,
    status: Values = Status.REGISTERED.value,
) -> pa.Table:
    """Rows of new requests, one per id. Every other value is either shared by all
    rows (a scalar) or given per row (a sequence or an Arrow array as long as ``ids``);
    ``metadata`` is JSON text."""
    count = len(ids)
    given = {
        "id": ids,
        "key_id": key_id,
        "batch_id": batch_id,
        "status": status,
        "model": model,
        "completion_window": completion_window,
        "webhook": webhook,
        "metadata": metadata,
        "body": body,
        "segment": segment,
        "created_at": created_at,
        "expires_at": expires_at,
        "est_tokens": est_tokens,
    }
    columns = []
    for field in REQUEST_ROWS:
        value = given[field.name]
        if isinstance(value, pa.Array | pa.ChunkedArray):
            column = value if value.type == field.type else value.cast(field.type)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            column = pa.array(value, field.type)
        else:
            column = shared(value, field.type, count)
        if len(column) != count:
            raise ValueError(f"{field.name}: {len(column)} values for {count} rows")
        columns.append(column)
    return pa.table(columns, names=list(COLUMNS))


def request_row(
    key_id: str, create: RequestCreate, created_at: int, est_tokens: int
) -> dict[str, Any]:
    """The row of one accepted single request, by attribute name (``meta`` a dict):
    what the route answers from and the seal writer reads; :func:`records_table` turns
    such rows into the table to insert."""
    body = create.request_body
    return {
        "id": new_id(),
        "key_id": key_id,
        "batch_id": None,
        "status": Status.REGISTERED.value,
        "model": body.model,
        "completion_window": create.completion_window,
        "webhook": str(create.webhook) if create.webhook else None,
        "meta": create.metadata or {},
        "body": body.model_dump_json(by_alias=True, exclude_none=True),
        "segment": None,
        "created_at": created_at,
        "expires_at": created_at + window_seconds(create.completion_window),
        "est_tokens": est_tokens,
    }


def records_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """The table of rows made by :func:`request_row` (any column left out is null)."""
    values = {
        column: [row.get(attribute) for row in rows]
        for column, attribute in zip(COLUMNS, ATTRIBUTES, strict=True)
    }
    values["metadata"] = [metadata_json(meta or {}) for meta in values["metadata"]]
    return pa.table(
        [pa.array(values[field.name], field.type) for field in REQUEST_ROWS],
        schema=REQUEST_ROWS,
    )
