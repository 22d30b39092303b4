import json
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from offpeak.clock import now
from offpeak.ingest.sealing import SealWriter, seal_all, seal_once
from offpeak.ingest.segments import SEGMENT_SCHEMA, encode_segment, segment_key
from offpeak.publish.objects import request_objects
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.state.requests import (
    insert_requests,
    list_requests,
    new_request_row,
    unsealed_requests,
)
from offpeak.storage import ObjectStore
from tests.utils.factories import add_requests, request_create, request_rows, unsealed_count


def utc_day() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


def test_seal_once_writes_one_segment_and_points_rows_at_it(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 5)
    bodies = {i: r.body for i, r in request_rows(db, ids).items()}
    days = {utc_day()}
    result = seal_once(db, store, limit=100)
    days.add(utc_day())
    assert result is not None
    assert result.rows == 5
    assert result.segment.startswith(tuple(f"requests/date={d}/" for d in days))
    assert list(store.list("requests/")) == [result.segment]

    table = pq.read_table(pa.BufferReader(store.get(result.segment)))
    assert table.schema.equals(SEGMENT_SCHEMA)
    assert table["id"].to_pylist() == ids
    assert dict(zip(ids, table["request_body"].to_pylist(), strict=True)) == bodies
    assert set(table["key_id"].to_pylist()) == {key.id}

    rows = request_rows(db, ids)
    assert {r.segment for r in rows.values()} == {result.segment}
    assert {r.body for r in rows.values()} == {None}


def test_seal_once_with_nothing_unsealed_writes_nothing(db: Database, store: ObjectStore) -> None:
    assert seal_once(db, store, limit=10) is None
    assert list(store.list()) == []


def test_seal_once_takes_the_oldest_rows_up_to_the_limit(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 5)
    result = seal_once(db, store, limit=3)
    assert result is not None
    assert result.rows == 3
    rows = request_rows(db, ids)
    assert [rows[i].segment is not None for i in ids] == [True, True, True, False, False]


def test_seal_all_seals_everything_in_segments_of_at_most_limit_rows(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 7)
    results = seal_all(db, store, limit=3)
    assert [r.rows for r in results] == [3, 3, 1]
    assert sorted(store.list("requests/")) == sorted(r.segment for r in results)
    assert unsealed_count(db) == 0
    assert len({r.segment for r in request_rows(db, ids).values()}) == 3


def test_request_objects_read_bodies_back_from_segments(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    sealed = add_requests(db, key.id, 3)
    expected = {i: json.loads(r.body or "") for i, r in request_rows(db, sealed).items()}
    seal_all(db, store, limit=2)
    [fresh] = add_requests(db, key.id, metadata={"fresh": True})
    expected[fresh] = json.loads(request_rows(db, [fresh])[fresh].body or "")

    objects = request_objects(store, list_requests(db, key.id))
    assert [o.id for o in objects] == [*sealed, fresh]
    assert {o.id: o.request_body for o in objects} == expected
    assert objects[-1].metadata == {"fresh": True}
    assert sorted(o.metadata["n"] for o in objects[:-1]) == [0, 1, 2]
    assert {o.status for o in objects} == {"registered"}


def test_segment_written_but_not_marked_is_resealed_once(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 4)
    # A crash between writing the segment and marking the rows: the segment exists,
    # the rows still hold their bodies and point at nothing.
    with db.session() as session:
        orphan_rows = unsealed_requests(session, 100)
    orphan = segment_key(int(time.time()))
    store.create(orphan, encode_segment(orphan_rows))

    results = seal_all(db, store, limit=100)
    assert len(results) == 1
    [result] = results
    assert result.segment != orphan
    assert result.rows == 4
    rows = request_rows(db, ids)
    assert {r.segment for r in rows.values()} == {result.segment}
    assert {r.body for r in rows.values()} == {None}
    objects = request_objects(store, list(rows.values()))
    assert {o.request_body["messages"][0]["content"] for o in objects if o.request_body} == {
        f"prompt {i}" for i in range(4)
    }


def committed_rows(db: Database, key_id: str, count: int) -> list[dict[str, Any]]:
    """Rows as the committer hands them to the writer: already in the database."""
    rows = [new_request_row(key_id, request_create(f"prompt {i}"), now()) for i in range(count)]
    insert_requests(db, rows)
    return rows


def test_seal_writer_seals_within_its_interval_and_stop_leaves_nothing_unsealed(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    writer = SealWriter(db, store, interval=0.2, rows=10_000)
    writer.start()
    try:
        writer.accepted(committed_rows(db, key.id, 3))
        assert wait_until(lambda: unsealed_count(db) == 0, timeout=2.0)
        add_requests(db, key.id, 2)  # committed but never handed over: the last pass scans
    finally:
        writer.stop(timeout=10)
    assert unsealed_count(db) == 0
    assert writer.sealed_rows == 5


def test_seal_writer_seals_early_when_enough_rows_wait(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    add_requests(db, key.id, 1)
    writer = SealWriter(db, store, interval=60, rows=4)
    writer.start()
    try:
        # The first pass is done once its row is counted; from then on only a wake-up
        # can seal before the 60 s interval.
        assert wait_until(lambda: writer.sealed_rows == 1, timeout=5.0)
        writer.accepted(committed_rows(db, key.id, 4))
        assert wait_until(lambda: unsealed_count(db) == 0, timeout=5.0)
    finally:
        writer.stop(timeout=10)
    assert writer.sealed_rows == 5


def test_seal_writer_first_pass_seals_rows_left_by_a_crash(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    add_requests(db, key.id, 3)
    writer = SealWriter(db, store, interval=60, rows=10_000)
    writer.start()
    try:
        assert wait_until(lambda: unsealed_count(db) == 0, timeout=5.0)
    finally:
        writer.stop(timeout=10)


def test_seal_writer_stop_seals_at_once_despite_a_long_interval(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    writer = SealWriter(db, store, interval=30, rows=10_000)
    writer.start()
    add_requests(db, key.id, 2)
    started = time.monotonic()
    writer.stop(timeout=30)
    assert time.monotonic() - started < 5
    assert unsealed_count(db) == 0
