"""Published JSONL lines are the request objects the API answers, field for field.

The publisher composes each line from stored pieces without building the object; here
every line is checked against the RequestObject built the slow way
(views.request_objects), on both databases and both stores, for requests in every
state a batch can hold when it is published.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Generator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from offpeak.carbon import ReplayProvider
from offpeak.catalog.models import ModelRegistry
from offpeak.catalog.pools import load_pools
from offpeak.clock import now
from offpeak.config import PACKAGED_POOLS, Settings, load_settings
from offpeak.errors import ObjectNotFound
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish import exxa_jsonl as publish
from offpeak.publish.exxa_jsonl import publish_batch
from offpeak.publish.objects import request_objects
from offpeak.run.footprint import record_job_footprint
from offpeak.run.launch import open_job
from offpeak.run.runner import JobRunner
from offpeak.schemas import BatchCreate, RequestObject, Status
from offpeak.state.batches import create_batch
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import ApiKey, Batch, Request
from offpeak.state.requests import cancel_request, insert_requests, list_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import request_create
from tests.utils.fake_engine import FakeEngine

MODEL = "llama-3.1-8b-instruct-fp16"  # a stand-in for tiny-chat in the default registry


@pytest.fixture
def funded(db: Database) -> ApiKey:
    return create_key(db, "team", 10)[0]


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=3)


def add(db: Database, key_id: str, content: str, **fields: Any) -> str:
    row = new_request_row(key_id, request_create(content, model=MODEL, **fields), now())
    insert_requests(db, [row])
    return str(row["id"])


def published_lines(store: ObjectStore, key: str) -> list[str]:
    text = store.get(key).decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def expected_objects(db: Database, store: ObjectStore, batch: Batch) -> list[dict[str, Any]]:
    """The batch's request objects built one by one with pydantic."""
    rows = list_requests(db, batch.key_id, batch_id=batch.id, limit=10_000)
    return [obj.model_dump(mode="json") for obj in request_objects(store, rows)]


def test_every_line_is_the_request_object(
    db: Database, store: ObjectStore, job_settings: Settings, funded: ApiKey
) -> None:
    registry = ModelRegistry.load(job_settings.models_path)
    ids = {
        "plain": add(db, funded.id, "hello"),
        "unicode": add(db, funded.id, 'héllo ☃ 日本 "quoted" back\\slash\nnew line\ttab'),
        "metadata": add(
            db,
            funded.id,
            "with metadata",
            metadata={"custom_id": "ä-1", "nested": {"list": [1, 2.5, None, True]}, "e": ""},
            webhook="https://example.com/hook?a=1&b=%22",
            completion_window="1h",
        ),
        "failed": add(db, funded.id, "FAIL: the fake engine refuses this one"),
        "cancelled_early": add(db, funded.id, "cancelled before any job"),
        "cancelled_in_job": add(db, funded.id, "cancelled while its job waits"),
    }
    ids.update({f"more {i}": add(db, funded.id, f"more {i}") for i in range(5)})
    seal_all(db, store, 1000)
    cancel_request(db, funded.id, ids["cancelled_early"], now())
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=1000, deployment="test", at=now())
    assert job is not None
    cancel_request(db, funded.id, ids["cancelled_in_job"], now())
    pools = load_pools(PACKAGED_POOLS)
    JobRunner(
        db,
        store,
        registry,
        job_settings,
        FakeEngine,
        account=lambda job_id: record_job_footprint(db, ReplayProvider(), pools, job_id),
    ).run(job.id)
    # Accepted after the job started: still registered, its body still in the database,
    # stored with line breaks between tokens (valid JSON, not one line).
    ids["unsealed"] = add(db, funded.id, "not sealed yet")
    with db.session() as session:
        row = session.get(Request, ids["unsealed"])
        assert row is not None and row.body is not None
        row.body = json.dumps(json.loads(row.body), indent=2)
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=list(ids.values())), now())

    published = publish_batch(db, store, batch)

    lines = published_lines(store, published.key)
    objects = [json.loads(line) for line in lines]
    expected = expected_objects(db, store, batch)
    assert objects == expected
    assert all(list(obj) == list(RequestObject.model_fields) for obj in objects)
    by_id = {obj["id"]: obj for obj in objects}
    assert by_id[ids["plain"]]["carbon"]["zone"] == "GB"  # accounted: its share
    assert by_id[ids["failed"]]["carbon"] is None
    assert {name: by_id[rid]["status"] for name, rid in ids.items()} == {
        name: "failed"
        if name == "failed"
        else "cancelled"
        if name.startswith("cancelled")
        else "registered"
        if name == "unsealed"
        else "completed"
        for name in ids
    }
    assert by_id[ids["failed"]]["error"]["code"] == "context_length_exceeded"
    assert by_id[ids["unsealed"]]["request_body"]["messages"][0]["content"] == "not sealed yet"
    assert published.lines == len(ids) and published.status == Status.COMPLETED


def test_lines_span_pages_and_a_batch_of_failures_fails(
    db: Database, store: ObjectStore, funded: ApiKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PAGE", 3)
    rows = [
        new_request_row(funded.id, request_create(f"r {i}", model=MODEL), now()) for i in range(8)
    ]
    insert_requests(db, rows)
    seal_all(db, store, 5)  # two segments
    ids = [str(r["id"]) for r in rows]
    with db.session() as session:  # failed without a message, as by hand
        session.execute(
            update(Request)
            .where(Request.key_id == funded.id)
            .values(status="failed", error_code="expired", error_message=None, ended_at=now())
        )
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=ids), now())

    published = publish_batch(db, store, batch)

    objects = [json.loads(line) for line in published_lines(store, published.key)]
    assert objects == expected_objects(db, store, batch)
    assert [obj["id"] for obj in objects] == sorted(ids)
    assert objects[0]["error"] == {"code": "expired", "message": ""}
    assert published.status == Status.FAILED and published.lines == len(ids)


def test_a_publish_that_fails_leaves_no_file_and_the_batch_open(
    db: Database, store: ObjectStore, funded: ApiKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PAGE", 2)
    rows = [
        new_request_row(funded.id, request_create(f"r {i}", model=MODEL), now()) for i in range(6)
    ]
    insert_requests(db, rows)
    seal_all(db, store, 3)  # two segments: the second is lost below
    with db.session() as session:
        session.execute(
            update(Request)
            .where(Request.key_id == funded.id)
            .values(status="failed", error_code="expired", ended_at=now())
        )
        segment = session.get(Request, rows[-1]["id"]).segment  # type: ignore[union-attr]
    store.delete(str(segment))
    batch = create_batch(db, funded.id, BatchCreate(requests_ids=[r["id"] for r in rows]), now())

    with pytest.raises(ObjectNotFound):
        publish_batch(db, store, batch)

    assert not store.exists(publish.results_key(batch))
    with db.session() as session:
        still = session.get(Batch, batch.id)
    assert still is not None and still.status == batch.status and still.results_key is None


def test_pages_read_ahead_pass_on_errors_and_stop_with_their_reader() -> None:
    def failing() -> Generator[int, None, None]:
        yield 1
        raise ValueError("database gone")

    read = []
    with pytest.raises(ValueError, match="database gone"):
        for item in publish._ahead(failing):
            read.append(item)
    assert read == [1]

    made = []

    def endless() -> Generator[int, None, None]:
        for number in itertools.count():
            made.append(number)
            yield number

    threads = threading.active_count()
    with closing(publish._ahead(endless, depth=2)) as items:
        assert next(items) == 0
    assert threading.active_count() == threads  # the reading thread has ended
    assert len(made) <= 5  # read ahead a page or two, no more
