"""Retention with a clock that moves: what has expired leaves the store and its rows are
marked; what has not is left alone, a segment or chunk file shared with an unexpired
request included. On both databases and both stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import Settings, load_settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import publish_batch
from offpeak.publish.objects import request_objects
from offpeak.retention import collect, deletable, expired, file_expires_at
from offpeak.run.launch import open_job
from offpeak.run.runner import JobRunner
from offpeak.schemas import BatchCreate
from offpeak.state.batches import create_batch
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Batch, Request
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import request_create
from tests.utils.fake_engine import FakeEngine

MODEL = "llama-3.1-8b-instruct-fp16"
DAY = 86400
RETENTION = 30 * DAY


def test_expired_only_once_ended_and_past_its_lifetime() -> None:
    assert not expired(None, 10, 1_000)  # not ended: never
    assert not expired(100, 10, 109)
    assert expired(100, 10, 110)


def test_a_file_expires_at_its_own_time_else_after_its_last_batch() -> None:
    assert file_expires_at(100, 500, [None], RETENTION) == 500  # the caller's wins
    assert file_expires_at(100, None, [], RETENTION) == 100 + RETENTION
    assert file_expires_at(100, None, [300, 200], RETENTION) == 300 + RETENTION
    assert file_expires_at(100, None, [300, None], RETENTION) is None  # a batch still open


def test_a_shared_object_goes_only_with_its_last_holder() -> None:
    holders = {"seg-1": ["a", "b"], "seg-2": ["c"], "seg-3": []}
    assert deletable(holders, ["a", "c"]) == ["seg-2", "seg-3"]
    assert deletable(holders, ["a", "b", "c"]) == ["seg-1", "seg-2", "seg-3"]


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=10)


def _ran(db: Database, store: ObjectStore, settings: Settings, key: ApiKey, n: int) -> list[str]:
    """``n`` requests sealed into one segment and run by one job into one chunk file."""
    rows = [new_request_row(key.id, request_create(f"r {i}", model=MODEL), now()) for i in range(n)]
    insert_requests(db, rows)
    seal_all(db, store, 1000)
    registry = ModelRegistry.load(settings.models_path)
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=1000, deployment="test", at=now())
    assert job is not None
    JobRunner(db, store, registry, settings, FakeEngine).run(job.id)
    return [str(r["id"]) for r in rows]


def _rows(db: Database, ids: list[str]) -> dict[str, Request]:
    with db.session() as session:
        return {r.id: r for r in session.scalars(select(Request).where(Request.id.in_(ids)))}


def test_expired_objects_leave_the_store_and_a_shared_segment_waits_for_its_last_request(
    db: Database, store: ObjectStore, job_settings: Settings, key: ApiKey
) -> None:
    a, b, lone = _ran(db, store, job_settings, key, 3)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=[a, b]), now())
    results = publish_batch(db, store, batch).key
    start = now()
    with db.session(write=True) as session:  # the batch ended first, the lone request later
        session.execute(update(Batch).where(Batch.id == batch.id).values(ended_at=start))
        session.execute(update(Request).where(Request.id == lone).values(ended_at=start + DAY))
    rows = _rows(db, [a, b, lone])
    segment, chunk = rows[a].segment, rows[a].result_key
    assert segment and chunk and rows[lone].segment == segment and rows[lone].result_key == chunk
    assert all(store.exists(k) for k in (results, segment, chunk))

    # Before anything expires, nothing is touched.
    early = collect(db, store, RETENTION, start + RETENTION - 1)
    assert (early.batches, early.requests, early.objects) == ([], 0, [])
    assert all(r.purged_at is None for r in _rows(db, [a, b, lone]).values())

    # The batch has expired: its results and its requests go, the segment and chunk
    # file they share with the lone request stay.
    first = collect(db, store, RETENTION, start + RETENTION)
    assert first.batches == [batch.id] and first.requests == 2
    assert first.objects == [results]
    assert not store.exists(results)
    assert store.exists(segment) and store.exists(chunk)
    rows = _rows(db, [a, b, lone])
    assert rows[a].purged_at == rows[b].purged_at == start + RETENTION
    assert rows[a].status == "completed" and rows[a].meta == {}  # status and metadata stay
    assert rows[lone].purged_at is None
    with db.session() as session:
        assert session.get(Batch, batch.id).purged_at == start + RETENTION  # type: ignore[union-attr]
    purged, kept = request_objects(store, [rows[a], rows[lone]])
    assert purged.status == "completed" and purged.request_body is purged.result_body is None
    assert kept.request_body is not None and kept.result_body is not None

    # A day later the lone request has expired too: the shared files go with it.
    second = collect(db, store, RETENTION, start + RETENTION + DAY)
    assert second.requests == 1 and sorted(second.objects) == sorted([segment, chunk])
    assert not store.exists(segment) and not store.exists(chunk)
    assert _rows(db, [lone])[lone].purged_at == start + RETENTION + DAY
    assert collect(db, store, RETENTION, start + 99 * DAY).objects == []  # done once


def test_a_batch_of_its_own_retention_goes_early_and_an_open_batch_never(
    db: Database, store: ObjectStore, job_settings: Settings, key: ApiKey
) -> None:
    short, still_open = _ran(db, store, job_settings, key, 2)
    ended = create_batch(db, key.id, BatchCreate(requests_ids=[short]), now())
    results = publish_batch(db, store, ended).key
    running = create_batch(db, key.id, BatchCreate(requests_ids=[still_open]), now())
    start = now()
    with db.session(write=True) as session:
        session.execute(
            update(Batch).where(Batch.id == ended.id).values(ended_at=start, retention_seconds=3600)
        )
        # A batch not ended keeps its requests, however old their own end.
        session.execute(update(Batch).where(Batch.id == running.id).values(ended_at=None))
        session.execute(update(Request).where(Request.id == still_open).values(ended_at=0))

    done = collect(db, store, RETENTION, start + 3600)

    assert done.batches == [ended.id] and done.requests == 1 and results in done.objects
    rows = _rows(db, [short, still_open])
    assert rows[short].purged_at is not None and rows[still_open].purged_at is None
    segment = rows[still_open].segment
    assert segment and store.exists(segment) and segment not in done.objects


def test_a_window_without_expired_requests_does_not_end_the_run(
    db: Database,
    store: ObjectStore,
    job_settings: Settings,
    key: ApiKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Windows of one ended request: the first holds only one kept longer, yet the
    # expired ones after it are collected in the same run.
    monkeypatch.setattr("offpeak.retention.PAGE", 1)
    kept, a, b = _ran(db, store, job_settings, key, 3)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=[a, b]), now())
    publish_batch(db, store, batch)
    start = now()
    with db.session(write=True) as session:
        session.execute(update(Batch).where(Batch.id == batch.id).values(ended_at=start))
        session.execute(update(Request).where(Request.id == kept).values(ended_at=start + DAY))

    done = collect(db, store, RETENTION, start + RETENTION)

    assert done.requests == 2
    rows = _rows(db, [kept, a, b])
    assert rows[kept].purged_at is None and rows[a].purged_at == rows[b].purged_at
