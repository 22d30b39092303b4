"""Parquet segments: sealed requests in object storage, schema derived from SegmentRow."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from offpeak.ids import new_id
from offpeak.schemas import SegmentRow
from offpeak.schemas.arrow import arrow_schema
from offpeak.state.requests import UnsealedRow
from offpeak.storage import ObjectStore

SEGMENT_SCHEMA = arrow_schema(SegmentRow)


def segment_key(at: int, segment_id: str | None = None) -> str:
    """Where a segment sealed at unix time ``at`` lives: partitioned by UTC date."""
    day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
    return f"requests/date={day}/{segment_id or new_id()}.parquet"


def encode_segment(rows: Sequence[UnsealedRow]) -> bytes:
    """Parquet bytes of ``rows`` in the segment schema (pure: no I/O)."""
    columns = {
        "id": [r.id for r in rows],
        "key_id": [r.key_id for r in rows],
        "model": [r.model for r in rows],
        "created_at": [r.created_at for r in rows],
        "expires_at": [r.expires_at for r in rows],
        "request_body": [r.body for r in rows],
        "metadata": [json.dumps(r.meta, separators=(",", ":")) for r in rows],
    }
    return encode_segment_table(pa.Table.from_pydict(columns, schema=SEGMENT_SCHEMA))


def encode_segment_table(table: pa.Table) -> bytes:
    """Parquet bytes of a table in the segment schema (pure: no I/O). Its text columns
    may also be string views (as polars hands them over): the file is the same."""
    if [(f.name, f.nullable) for f in table.schema] != [
        (f.name, f.nullable) for f in SEGMENT_SCHEMA
    ]:
        raise ValueError(f"not a segment table: {table.schema}")
    sink = io.BytesIO()
    # Dictionaries and statistics only where they pay: the bodies are unique and long.
    # No Arrow schema stored: readers see plain strings whatever the writer's types.
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=["key_id", "model"],
        write_statistics=["id", "created_at", "expires_at"],
        store_schema=False,
    )
    return sink.getvalue()


def read_segment(store: ObjectStore, key: str, ids: Iterable[str] | None = None) -> pa.Table:
    """A segment's rows, optionally only those with the given ids."""
    table = pq.read_table(pa.BufferReader(store.get(key)), schema=SEGMENT_SCHEMA)
    if ids is not None:
        table = table.filter(pc.is_in(table["id"], value_set=pa.array(list(ids), pa.string())))
    return table


def read_bodies(store: ObjectStore, key: str, ids: Iterable[str] | None) -> dict[str, str]:
    """Request bodies (JSON text) by id from one segment (all of them when ids is None)."""
    table = read_segment(store, key, ids).select(["id", "request_body"])
    return dict(zip(table["id"].to_pylist(), table["request_body"].to_pylist(), strict=True))
