import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from offpeak.ids import is_id, new_id
from offpeak.ingest.segments import (
    SEGMENT_SCHEMA,
    encode_segment,
    read_bodies,
    read_segment,
    segment_key,
)
from offpeak.schemas import SegmentRow
from offpeak.schemas.arrow import arrow_schema
from offpeak.state.requests import UnsealedRow
from offpeak.storage import ObjectStore


def unsealed(count: int) -> list[UnsealedRow]:
    return [
        UnsealedRow(
            id=new_id(),
            key_id="k" * 24,
            model="m",
            created_at=1_750_000_000 + i,
            expires_at=1_750_086_400 + i,
            body=json.dumps({"model": "m", "messages": [{"role": "user", "content": f"p{i}"}]}),
            meta={"n": i},
        )
        for i in range(count)
    ]


def test_segment_schema_is_derived_from_segment_row() -> None:
    assert SEGMENT_SCHEMA.names == list(SegmentRow.model_fields)
    assert SEGMENT_SCHEMA.field("created_at").type == pa.int64()
    assert SEGMENT_SCHEMA.field("request_body").type == pa.string()
    assert not any(field.nullable for field in SEGMENT_SCHEMA)


def test_arrow_schema_refuses_fields_without_an_arrow_type() -> None:
    class Loose(BaseModel):
        extra: dict[str, str]

    with pytest.raises(TypeError, match=r"Loose\.extra"):
        arrow_schema(Loose)


def test_segment_key_is_partitioned_by_utc_date() -> None:
    assert segment_key(0, "a" * 24) == f"requests/date=1970-01-01/{'a' * 24}.parquet"
    assert segment_key(1_750_000_000 - 1_750_000_000 % 86_400 - 1).startswith(
        "requests/date=2025-06-14/"
    )
    name = segment_key(1_750_000_000).rsplit("/", 1)[1]
    assert is_id(name.removesuffix(".parquet"))


def test_encode_segment_writes_parquet_in_the_segment_schema() -> None:
    rows = unsealed(3)
    table = pq.read_table(pa.BufferReader(encode_segment(rows)))
    assert table.schema.equals(SEGMENT_SCHEMA)
    assert table["id"].to_pylist() == [r.id for r in rows]
    assert table["request_body"].to_pylist() == [r.body for r in rows]
    assert [json.loads(m) for m in table["metadata"].to_pylist()] == [{"n": i} for i in range(3)]
    for record in table.to_pylist():
        SegmentRow.model_validate(record)


def test_read_segment_filters_by_id(store: ObjectStore) -> None:
    rows = unsealed(4)
    store.create("requests/date=2025-06-15/s.parquet", encode_segment(rows))
    table = read_segment(store, "requests/date=2025-06-15/s.parquet", [rows[1].id, rows[3].id])
    assert table["id"].to_pylist() == [rows[1].id, rows[3].id]
    whole = read_segment(store, "requests/date=2025-06-15/s.parquet")
    assert whole.num_rows == 4


def test_read_bodies_returns_bodies_by_id(store: ObjectStore) -> None:
    rows = unsealed(3)
    store.create("seg.parquet", encode_segment(rows))
    assert read_bodies(store, "seg.parquet", [rows[0].id, new_id()]) == {rows[0].id: rows[0].body}
