"""The one row builder, and the one insert every ingest path hands its table to: the
same rows land the same whichever way they go in, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from offpeak.ids import new_id, new_ids
from offpeak.ingest.rows import (
    REQUEST_ROWS,
    is_shared,
    metadata_json,
    plain,
    records_table,
    request_row,
    request_table,
)
from offpeak.state.db import Database
from offpeak.state.inserter import RequestInserter
from offpeak.state.models import ApiKey, Batch, Request
from offpeak.state.requests import insert_requests
from tests.utils.factories import MODEL, request_create

AT = 1_750_000_000


def table_of(key_id: str, count: int, **values: Any) -> pa.Table:
    return request_table(
        ids=new_ids(count),
        key_id=key_id,
        model=MODEL,
        completion_window="24h",
        created_at=AT,
        expires_at=AT + 60,
        metadata=[metadata_json({"custom_id": f"c{i}", "é": [1, None]}) for i in range(count)],
        est_tokens=list(range(count)),
        **values,
    )


def stored(db: Database, key_id: str) -> list[dict[str, Any]]:
    columns = [getattr(Request, "meta" if n == "metadata" else n) for n in REQUEST_ROWS.names]
    with db.session() as session:
        rows = session.execute(
            select(*columns).where(Request.key_id == key_id).order_by(Request.id)
        )
        return [dict(zip(REQUEST_ROWS.names, row, strict=True)) for row in rows]


def test_shared_values_are_one_run_and_per_row_values_are_columns() -> None:
    table = table_of("k" * 24, 3, segment="s.parquet")
    assert table.column_names == list(REQUEST_ROWS.names)
    shared = {name for name in table.column_names if is_shared(table[name])}
    assert shared == set(REQUEST_ROWS.names) - {"id", "metadata", "est_tokens"}
    assert plain(table["segment"]).to_pylist() == ["s.parquet"] * 3
    assert table["status"].to_pylist() == ["registered"] * 3
    assert table["batch_id"].to_pylist() == [None] * 3


def test_a_column_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="est_tokens: 2 values for 3 rows"):
        request_table(
            ids=new_ids(3),
            key_id="k",
            model=MODEL,
            completion_window="24h",
            created_at=AT,
            expires_at=AT,
            metadata="{}",
            est_tokens=[1, 2],
        )


def test_a_single_requests_row_spells_metadata_as_the_model_does() -> None:
    create = request_create("hi", metadata={"a": 1}, completion_window="10m")
    row = request_row("k" * 24, create, AT, 42)
    assert row["meta"] == {"a": 1} and "metadata" not in row
    assert (row["expires_at"], row["est_tokens"]) == (AT + 600, 42)
    table = records_table([row])
    assert table.schema == REQUEST_ROWS
    assert table["metadata"].to_pylist() == ['{"a":1}']  # compact, as every path stores it
    assert table["id"].to_pylist() == [row["id"]]


@pytest.mark.parametrize("how", ["bulk", "per row", "committer"])
def test_every_way_in_stores_the_same_rows(db: Database, key: ApiKey, how: str) -> None:
    batch = Batch(
        id=new_id(), key_id=key.id, status="validating", meta={}, created_at=AT, expires_at=AT
    )
    with db.session(write=True) as session:
        session.add(batch)
    shared = {"batch_id": batch.id, "segment": "requests/s.parquet"}
    if how == "per row":  # a per-row segment: not the bulk statement on SQLite
        shared["segment"] = ["requests/s.parquet"] * 3  # type: ignore[assignment]
    table = table_of(key.id, 3, **shared)
    if how == "committer":
        inserter = RequestInserter(db)
        inserter.insert(table)
        inserter.close()
    else:
        insert_requests(db, table, foreign_keys=how != "bulk")
    rows = stored(db, key.id)
    assert [r["id"] for r in rows] == table["id"].to_pylist()
    assert [r["metadata"] for r in rows] == [
        {"custom_id": f"c{i}", "é": [1, None]} for i in range(3)
    ]
    assert [r["est_tokens"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert (row["key_id"], row["batch_id"], row["model"]) == (key.id, batch.id, MODEL)
        assert (row["status"], row["completion_window"]) == ("registered", "24h")
        assert (row["created_at"], row["expires_at"]) == (AT, AT + 60)
        assert (row["segment"], row["body"], row["webhook"]) == ("requests/s.parquet", None, None)


def test_single_request_rows_go_in_through_the_same_insert(db: Database, key: ApiKey) -> None:
    rows = [
        request_row(key.id, request_create(f"p{i}", metadata={"i": i}, webhook=hook), AT + i, i)
        for i, hook in enumerate([None, "https://example.com/h"])
    ]
    inserter = RequestInserter(db)
    inserter.insert(rows)
    inserter.close()
    stored_rows = stored(db, key.id)
    assert [r["id"] for r in stored_rows] == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in stored_rows}
    for row in rows:
        got = by_id[row["id"]]
        assert got["metadata"] == row["meta"] and got["body"] == row["body"]
        assert json.loads(got["body"])["messages"][0]["content"] == f"p{row['est_tokens']}"
        assert (got["webhook"], got["created_at"]) == (row["webhook"], row["created_at"])
        assert got["segment"] is None and got["batch_id"] is None


def test_a_failed_insert_leaves_nothing_and_the_next_one_works(db: Database, key: ApiKey) -> None:
    table = table_of(key.id, 3)
    insert_requests(db, table)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        insert_requests(db, pa.concat_tables([table_of(key.id, 2), table.slice(0, 1)]))
    assert len(stored(db, key.id)) == 3
    insert_requests(db, table_of(key.id, 2), foreign_keys=False)
    assert len(stored(db, key.id)) == 5
