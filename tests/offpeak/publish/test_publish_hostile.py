"""Awkward stored values reach a results file only through a JSON encoder, and a batch
that cannot be published fails alone.

The values are written straight into the state database, as an older release (whose
`completion_window` pattern let "24h\\n" through) or a hand could have stored them; each
batch is published the way the flows do it (publish_ready), and every line must parse.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from offpeak.clock import now
from offpeak.errors import StorageUnavailable
from offpeak.ingest.sealing import seal_all
from offpeak.publish import exxa_jsonl as publish
from offpeak.publish.exxa_jsonl import encode_metadata, publish_ready, results_key
from offpeak.schemas import BatchCreate, RequestObject, Status
from offpeak.state.batches import PUBLISH_ERROR, create_batch
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import Batch, Request
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import request_create

MODEL = "llama-3.1-8b-instruct-fp16"

# Text every store keeps: line and paragraph separators, controls, quotes, non-BMP,
# right-to-left, combining marks, a byte-order mark, noncharacters.
ODD = 'a\nb\r\u2028\u2029\t\x1f\x7f"\\/ 😀 שלום é\u0301 \ufeff \ufffe \U0010ffff'


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for level in range(levels):
        value = {"d": [value, level]}
    return value


# What each request of the awkward batch holds, by column; SQLite alone can also hold a
# NUL and (in JSON text) a lone surrogate and NaN, which PostgreSQL refuses to store.
AWKWARD: dict[str, dict[str, Any]] = {
    "window_newline": {"completion_window": "24h\n"},
    "window_digits": {"completion_window": "٢٤h", "webhook": 'https://e.com/"\n'},
    "window_separator": {"completion_window": "1h\u2028", "error_message": ODD},
    "metadata_odd": {"meta": {"k\n\u2028": ODD, "list": [ODD, 1, 2.5, None, True]}},
    "metadata_deep": {"meta": {"deep": deep(100), "e": ""}},
    "error_odd": {"error_code": 'x"\n', "error_message": "line\nbreak\u2028"},
}
SQLITE_ONLY: dict[str, dict[str, Any]] = {
    "window_nul": {"completion_window": "24h\x00"},
    "metadata_surrogate": {"meta": {"s": "\ud800", "pair": "\U0001f600", "\udfff": 1}},
    "metadata_nan": {"meta": {"nan": float("nan"), "inf": [float("inf"), -float("inf")]}},
    "error_nul": {"error_message": "nul\x00here"},
}


def stored(db: Database, key_id: str, count: int) -> list[str]:
    rows = [
        new_request_row(key_id, request_create(f"r {i}", model=MODEL), now()) for i in range(count)
    ]
    insert_requests(db, rows)
    return [str(row["id"]) for row in rows]


def end(db: Database, ids: list[str], **values: Any) -> None:
    """The requests failed (expired), as the scheduler leaves them, with ``values``."""
    with db.session(write=True) as session:
        session.execute(
            update(Request)
            .where(Request.id.in_(ids))
            .values(status=Status.FAILED.value, error_code="expired", ended_at=now(), **values)
        )


def lines_of(store: ObjectStore, key: str) -> list[dict[str, Any]]:
    data = store.get(key)
    assert data.endswith(b"\n")
    # A line break only between lines: every other one is escaped inside its line.
    return [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]


def test_every_awkward_value_publishes_as_a_line_that_parses(
    db: Database, store: ObjectStore
) -> None:
    key = create_key(db, "hostile", 10)[0]
    cases = AWKWARD | (SQLITE_ONLY if db.dialect == "sqlite" else {})
    ids = dict(zip(cases, stored(db, key.id, len(cases)), strict=True))
    seal_all(db, store, 1000)
    ids["unsealed"] = stored(db, key.id, 1)[0]  # accepted after sealing: body in the database
    end(db, list(ids.values()))
    with db.session(write=True) as session:
        for name, values in cases.items():
            session.execute(update(Request).where(Request.id == ids[name]).values(**values))
        # A body stored by hand: raw controls inside its strings, breaks between tokens.
        body = '{\n "model": "%s",\n "messages": [{"role": "user", "content": "a\tb\nc\u2028"}]}'
        session.execute(
            update(Request).where(Request.id == ids["unsealed"]).values(body=body % MODEL)
        )
    batch = create_batch(db, key.id, BatchCreate(requests_ids=sorted(ids.values())), now())

    (published,) = publish_ready(db, store)

    assert published.batch_id == batch.id and published.lines == len(ids)
    by_id = {line["id"]: line for line in lines_of(store, published.key)}
    assert sorted(by_id) == sorted(ids.values())
    assert all(list(line) == list(RequestObject.model_fields) for line in by_id.values())
    for name, values in cases.items():
        line = by_id[ids[name]]
        for column, value in values.items():
            field = {"meta": "metadata", "error_code": "error", "error_message": "error"}
            got = line[field.get(column, column)]
            if column.startswith("error_"):
                got = got[column.removeprefix("error_")]
            if name == "metadata_nan":  # not JSON: published as null
                value = {"nan": None, "inf": [None, None]}
            assert got == value, name
    body = by_id[ids["unsealed"]]["request_body"]
    assert body["messages"][0]["content"] == "a\tb\nc\u2028"


def test_metadata_is_encoded_as_ingestion_stores_it() -> None:
    value = {"k": "é ☃ \n \u2028", "n": [1, 2.5, None, True, {"d": {}}], "big": 2**70}
    text = json.dumps(value, separators=(",", ":"))
    assert encode_metadata(text) == text
    assert encode_metadata(json.dumps(value)) == text  # the ORM's spaced form, compacted
    assert encode_metadata(None) == encode_metadata("") == "{}"
    assert encode_metadata('{"a": NaN, "b": [Infinity]}') == '{"a":null,"b":[null]}'


def batch_of(db: Database, name: str, count: int = 3) -> Batch:
    key = create_key(db, name, 10)[0]
    ids = stored(db, key.id, count)
    end(db, ids)
    return create_batch(db, key.id, BatchCreate(requests_ids=ids), now())


def test_a_batch_that_cannot_be_published_fails_alone(
    db: Database, store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    poisoned = batch_of(db, "first")
    later = batch_of(db, "second")  # another key's, created after it
    with db.session(write=True) as session:  # a carbon object that is not JSON
        session.execute(
            update(Request).where(Request.batch_id == poisoned.id).values(carbon="{not json")
        )
    seal_all(db, store, 1000)

    with caplog.at_level(logging.ERROR, logger=publish.__name__):
        published = publish_ready(db, store)

    assert [p.batch_id for p in published] == [later.id]
    assert len(lines_of(store, results_key(later))) == 3
    assert not store.exists(results_key(poisoned))
    with db.session() as session:
        failed = session.scalars(select(Batch).where(Batch.id == poisoned.id)).one()
    assert failed.status == Status.FAILED.value and failed.ended_at is not None
    assert failed.results_key is None
    assert failed.meta[PUBLISH_ERROR]["code"] == "publish_failed"
    assert failed.meta[PUBLISH_ERROR]["message"]
    assert [r.message for r in caplog.records if poisoned.id in r.message] != []
    assert publish_ready(db, store) == []  # not tried again


def test_a_batch_whose_store_is_out_of_reach_stays_open_for_the_next_run(
    db: Database, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = batch_of(db, "first"), batch_of(db, "second")
    seal_all(db, store, 1000)
    real = publish.publish_batch

    def flaky(db: Database, store: ObjectStore, batch: Batch) -> publish.Published:
        if batch.id == first.id:
            raise StorageUnavailable("connection refused")
        return real(db, store, batch)

    monkeypatch.setattr(publish, "publish_batch", flaky)
    assert [p.batch_id for p in publish_ready(db, store)] == [second.id]
    with db.session() as session:
        assert session.get(Batch, first.id).status == Status.IN_PROGRESS.value  # type: ignore[union-attr]

    monkeypatch.setattr(publish, "publish_batch", real)
    assert [p.batch_id for p in publish_ready(db, store)] == [first.id]


def test_a_batch_whose_database_drops_out_of_the_bulk_read_stays_open(
    db: Database, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    batch = batch_of(db, "first")
    seal_all(db, store, 1000)
    # The bulk reader opens its own connection from the URL; the ORM's pool keeps its own.
    gone = (
        "postgresql+psycopg://postgres@127.0.0.1:1/gone"  # nothing listens on port 1
        if db.dialect == "postgresql"
        else f"sqlite:///{tmp_path / 'gone' / 'state.db'}"
    )
    monkeypatch.setattr(db, "url", gone)
    assert publish_ready(db, store) == []
    assert not store.exists(results_key(batch))
    with db.session() as session:
        assert session.get(Batch, batch.id).status == Status.IN_PROGRESS.value  # type: ignore[union-attr]

    monkeypatch.undo()
    assert [p.batch_id for p in publish_ready(db, store)] == [batch.id]


def test_a_column_null_in_a_pages_first_rows_publishes_what_follows(
    db: Database, store: ObjectStore
) -> None:
    # SQLite's Arrow reader infers a column's type from the first rows it reads (1024 by
    # default): a webhook null up to there, set after, must still come out as text.
    batch = batch_of(db, "late", count=1100)
    with db.session(write=True) as session:
        last = session.scalars(
            select(Request.id).where(Request.batch_id == batch.id).order_by(Request.id.desc())
        ).first()
        session.execute(update(Request).where(Request.id == last).values(webhook="https://e.com/h"))
    seal_all(db, store, 2000)

    (published,) = publish_ready(db, store)
    lines = lines_of(store, published.key)
    assert len(lines) == 1100
    assert [line["webhook"] for line in lines if line["webhook"]] == ["https://e.com/h"]
    assert lines[-1]["id"] == last
