"""Partial results: while a batch runs, the lines of its ended requests are already
the lines its published results will hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offpeak.carbon import ReplayProvider
from offpeak.catalog.models import ModelRegistry
from offpeak.catalog.pools import load_pools
from offpeak.clock import now
from offpeak.config import PACKAGED_POOLS, Settings, load_settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import publish_batch
from offpeak.publish.partial import partial_lines, pending_count
from offpeak.run.footprint import record_job_footprint
from offpeak.run.launch import open_job
from offpeak.run.runner import JobRunner
from offpeak.schemas import BatchCreate
from offpeak.state.batches import cancel_batch, create_batch, get_batch
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import request_create
from tests.utils.fake_engine import FakeEngine

MODEL = "llama-3.1-8b-instruct-fp16"


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=2)


def run_one_job(db: Database, store: ObjectStore, settings: Settings, size: int) -> None:
    registry = ModelRegistry.load(settings.models_path)
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=size, deployment="test", at=now())
    assert job is not None
    pools = load_pools(PACKAGED_POOLS)
    JobRunner(
        db,
        store,
        registry,
        settings,
        FakeEngine,
        account=lambda job_id: record_job_footprint(db, ReplayProvider(), pools, job_id),
    ).run(job.id)


def lines(chunks: object) -> list[dict[str, object]]:
    text = b"".join(chunks).decode()  # type: ignore[arg-type]
    return [json.loads(line) for line in text.splitlines()]


def test_partial_lines_equal_the_final_ones(
    db: Database, store: ObjectStore, job_settings: Settings
) -> None:
    key = create_key(db, "team", 10)[0]
    rows = [new_request_row(key.id, request_create(f"q{i}", model=MODEL), now()) for i in range(7)]
    rows.append(new_request_row(key.id, request_create("FAIL: refused", model=MODEL), now()))
    insert_requests(db, rows)
    seal_all(db, store, 1000)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=sorted(r["id"] for r in rows)), now())
    assert list(partial_lines(db, store, batch)) == [] and pending_count(db, batch) == 8

    run_one_job(db, store, job_settings, size=3)  # the three oldest end
    partial = lines(partial_lines(db, store, batch))
    assert len(partial) == 3 and pending_count(db, batch) == 5
    # Ended, and accounted: the "FAIL" one may be among them (ids of one millisecond).
    assert {line["status"] for line in partial} <= {"completed", "failed"}
    assert all(line["carbon"] for line in partial if line["status"] == "completed")

    run_one_job(db, store, job_settings, size=100)
    published = publish_batch(db, store, get_batch(db, key.id, batch.id))
    final = [json.loads(line) for line in store.get(published.key).decode().splitlines()]
    assert final[:3] == partial
    assert lines(partial_lines(db, store, batch)) == final and pending_count(db, batch) == 0


def test_a_cancelled_batch_has_partial_results(
    db: Database, store: ObjectStore, job_settings: Settings
) -> None:
    key = create_key(db, "team", 10)[0]
    rows = [new_request_row(key.id, request_create(f"q{i}", model=MODEL), now()) for i in range(4)]
    insert_requests(db, rows)
    seal_all(db, store, 1000)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=sorted(r["id"] for r in rows)), now())
    run_one_job(db, store, job_settings, size=2)
    cancel_batch(db, key.id, batch.id, now())
    got = lines(partial_lines(db, store, batch))
    assert [line["status"] for line in got] == ["completed"] * 2 + ["cancelled"] * 2
    assert pending_count(db, batch) == 0
