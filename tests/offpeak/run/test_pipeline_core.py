"""The job machinery without Prefect or vLLM: claim, run in chunks, restart, publish.

Real databases and stores; the engine is tests/utils/fake_engine.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import Settings, load_settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import publish_ready
from offpeak.publish.objects import request_objects
from offpeak.run.chunk_files import chunk_key, read_results
from offpeak.run.launch import open_job, read_manifest
from offpeak.run.runner import JobRunner
from offpeak.schemas import BatchCreate, Status
from offpeak.state import jobs as state
from offpeak.state.batches import create_batch, get_batch, ready_to_publish
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import ApiKey, Job, Request
from offpeak.state.requests import cancel_request, get_request, insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import request_create
from tests.utils.fake_engine import Crash, FakeEngine

MODEL = "llama-3.1-8b-instruct-fp16"  # a stand-in for tiny-chat in the default registry


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry.load(settings.models_path)


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=4)


@pytest.fixture
def funded(db: Database) -> ApiKey:
    return create_key(db, "team", 10)[0]


def submit(db: Database, store: ObjectStore, key_id: str, prompts: list[str]) -> list[str]:
    rows = [new_request_row(key_id, request_create(p, model=MODEL), now()) for p in prompts]
    insert_requests(db, rows)
    seal_all(db, store, 1000)
    return [r["id"] for r in rows]


def open_one(db: Database, store: ObjectStore, registry: ModelRegistry) -> Job:
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=1000, deployment="inference/local", at=now())
    assert job is not None
    return job


def run(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    settings: Settings,
    job: Job,
    engine: FakeEngine,
) -> None:
    JobRunner(db, store, registry, settings, lambda: engine).run(job.id)


def test_stand_ins_are_grouped_under_their_engine_model(
    db: Database, store: ObjectStore, registry: ModelRegistry, funded: ApiKey
) -> None:
    submit(db, store, funded.id, ["a", "b"])
    other = new_request_row(funded.id, request_create("c", model="tiny-chat"), now())
    insert_requests(db, [other])
    seal_all(db, store, 1000)
    (group,) = pending_groups(db, registry)
    assert group.engine_model == "tiny-chat"
    assert group.models == ("llama-3.1-8b-instruct-fp16", "tiny-chat")
    assert group.count == 3


def test_open_job_claims_requests_and_skips_cancelled_ones(
    db: Database, store: ObjectStore, registry: ModelRegistry, funded: ApiKey
) -> None:
    ids = submit(db, store, funded.id, ["a", "b", "c"])
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=ids[:2]), now())
    cancel_request(db, funded.id, ids[2], now())
    job = open_one(db, store, registry)
    assert job.request_count == 2
    assert [row.id for row in read_manifest(store, job)] == sorted(ids[:2])
    assert {get_request(db, funded.id, i).status for i in ids[:2]} == {"in_progress"}
    assert get_request(db, funded.id, ids[2]).status == "cancelled"
    assert get_batch(db, funded.id, batch.id).status == "in_progress"
    assert pending_groups(db, registry) == []


def test_job_runs_in_chunks_records_results_and_debits_usage(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    ids = submit(db, store, funded.id, [f"hello {i}" for i in range(9)] + ["FAIL please"])
    job = open_one(db, store, registry)
    engine = FakeEngine()
    run(db, store, registry, job_settings, job, engine)
    assert [len(call) for call in engine.calls] == [4, 4, 2]
    rows = [get_request(db, funded.id, i) for i in ids]
    assert [r.status for r in rows] == ["completed"] * 9 + ["failed"]
    assert rows[-1].error_code == "context_length_exceeded" and rows[-1].cost_usd == 0
    spent = sum((r.cost_usd or Decimal(0)) for r in rows)
    expected = Decimal(str(registry.get(MODEL).cost_usd(5, 2)))
    assert spent == pytest.approx(9 * expected)
    with db.session() as session:
        balance = session.get(ApiKey, funded.id).credits_usd  # type: ignore[union-attr]
    assert balance == pytest.approx(Decimal(10) - spent, abs=Decimal("1e-8"))
    full = request_objects(store, [get_request(db, funded.id, ids[0])])[0]
    assert full.result_body and full.result_body["choices"][0]["message"]["content"] == "HELLO 0"
    assert full.result_body["model"] == MODEL
    done = state.get_job(db, job.id)
    assert done.status == "completed" and done.completion_tokens == 18
    assert done.startup_seconds is not None and 0 <= done.startup_seconds <= done.wall_seconds


def test_each_chunk_is_queued_before_the_one_ahead_of_it_is_collected(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    # The engine's batch never drains between chunks: the next chunk is already queued.
    events: list[str] = []

    class Logged(FakeEngine):
        def submit(self, requests):  # type: ignore[no-untyped-def]
            chunk = sum(e.startswith("queue") for e in events)
            events.append(f"queue {chunk}")
            collect = super().submit(requests)

            def logged():  # type: ignore[no-untyped-def]
                events.append(f"collect {chunk}")
                return collect()

            return logged

    submit(db, store, funded.id, [f"hello {i}" for i in range(10)])
    job = open_one(db, store, registry)
    run(db, store, registry, job_settings, job, Logged())
    assert events == ["queue 0", "queue 1", "collect 0", "queue 2", "collect 1", "collect 2"]


def test_restarted_job_skips_finished_chunks_and_runs_nothing_twice(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    ids = submit(db, store, funded.id, [f"p {i}" for i in range(10)])
    job = open_one(db, store, registry)
    with pytest.raises(Crash):
        run(db, store, registry, job_settings, job, FakeEngine(crash_after_chunks=2))
    assert store.exists(chunk_key(job.id, 1)) and not store.exists(chunk_key(job.id, 2))
    second = FakeEngine()
    run(db, store, registry, job_settings, job, second)
    assert second.calls == [sorted(ids)[8:]]
    ran = [r.id for i in range(3) for r in read_results(store, chunk_key(job.id, i))]
    assert sorted(ran) == sorted(ids)
    assert {get_request(db, funded.id, i).status for i in ids} == {"completed"}
    with db.session() as session:
        balance = session.get(ApiKey, funded.id).credits_usd  # type: ignore[union-attr]
        spent = sum(session.scalars(select(Request.cost_usd).where(Request.key_id == funded.id)))
    assert balance == pytest.approx(Decimal(10) - spent, abs=Decimal("1e-8"))  # debited once


def test_request_cancelled_while_in_progress_is_not_run_or_charged(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    ids = submit(db, store, funded.id, ["a", "b", "c"])
    job = open_one(db, store, registry)
    cancel_request(db, funded.id, ids[1], now())
    engine = FakeEngine()
    run(db, store, registry, job_settings, job, engine)
    assert engine.calls == [sorted([ids[0], ids[2]])]
    cancelled = get_request(db, funded.id, ids[1])
    assert cancelled.status == "cancelled" and cancelled.cost_usd is None


def test_applying_a_chunk_twice_changes_nothing(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    submit(db, store, funded.id, ["a", "b"])
    job = open_one(db, store, registry)
    run(db, store, registry, job_settings, job, FakeEngine())
    key = chunk_key(job.id, 0)
    from offpeak.run.chunk_files import outcomes

    assert state.apply_outcomes(db, job.id, key, outcomes(read_results(store, key)), now()) == 0


def test_publish_writes_one_jsonl_per_finished_batch(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    ids = submit(db, store, funded.id, ["x 1", "x 2", "FAIL 3"])
    doomed = submit(db, store, funded.id, ["FAIL a", "FAIL b"])
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=ids), now())
    all_failed = create_batch(db, funded.id, BatchCreate(requests_ids=doomed), now())
    assert publish_ready(db, store) == []  # nothing has ended yet
    run(db, store, registry, job_settings, open_one(db, store, registry), FakeEngine())
    published = {p.batch_id: p for p in publish_ready(db, store)}
    assert published[batch.id].status == Status.COMPLETED
    assert published[all_failed.id].status == Status.FAILED
    lines = [json.loads(line) for line in store.get(published[batch.id].key).splitlines()]
    assert [line["id"] for line in lines] == sorted(ids)
    by_id = {line["id"]: line for line in lines}
    assert [by_id[i]["status"] for i in ids] == ["completed", "completed", "failed"]
    assert by_id[ids[0]]["result_body"]["choices"][0]["message"]["content"] == "X 1"
    assert by_id[ids[0]]["request_body"]["messages"][0]["content"] == "x 1"
    assert by_id[ids[2]]["error"]["code"] == "context_length_exceeded"
    finished = get_batch(db, funded.id, batch.id)
    assert finished.status == "completed" and finished.results_key == published[batch.id].key
    assert publish_ready(db, store) == []  # published once


def test_a_batch_publishes_once_its_job_is_accounted(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    funded: ApiKey,
) -> None:
    # Its requests have all ended before the job's carbon is accounted: publishing
    # then would leave the lines without their footprint.
    ids = submit(db, store, funded.id, ["x 1", "x 2"])
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=ids), now())
    job = open_one(db, store, registry)
    ready_while_accounting: list[list[str]] = []

    def account(job_id: str) -> None:
        assert {r.status for r in (get_request(db, funded.id, i) for i in ids)} == {"completed"}
        ready_while_accounting.append([b.id for b in ready_to_publish(db)])

    JobRunner(db, store, registry, job_settings, FakeEngine, account=account).run(job.id)
    assert ready_while_accounting == [[]]
    assert [b.id for b in ready_to_publish(db)] == [batch.id]


def test_overdue_requests_expire_uncharged(
    db: Database, store: ObjectStore, funded: ApiKey
) -> None:
    (rid,) = submit(db, store, funded.id, ["late"])
    assert state.expire_overdue(db, now() + 86_401) == 1
    row = get_request(db, funded.id, rid)
    assert (row.status, row.error_code, row.cost_usd) == ("failed", "expired", None)


def test_failing_a_job_fails_only_what_it_still_holds(
    db: Database, store: ObjectStore, registry: ModelRegistry, funded: ApiKey
) -> None:
    ids = submit(db, store, funded.id, ["a", "b"])
    job = open_one(db, store, registry)
    cancel_request(db, funded.id, ids[0], now())
    assert state.fail_job(db, job.id, "job_failed", "stopped 3 times", now()) == 1
    assert get_request(db, funded.id, ids[0]).status == "cancelled"
    failed = get_request(db, funded.id, ids[1])
    assert (failed.status, failed.error_code) == ("failed", "job_failed")
    assert state.get_job(db, job.id).status == "failed"


def test_a_batch_of_requests_already_running_starts_in_progress(
    db: Database, store: ObjectStore, registry: ModelRegistry, funded: ApiKey
) -> None:
    ids = submit(db, store, funded.id, ["a", "b"])
    open_one(db, store, registry)
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=ids), now())
    assert batch.status == "in_progress" and batch.in_progress_at is not None
