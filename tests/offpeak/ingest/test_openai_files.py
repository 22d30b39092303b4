"""OpenAI batches in the core: reading input files, and the output and error files
written from stored results, against the real database and object stores."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pydantic_core import to_json
from sqlalchemy import update

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import PACKAGED_MODELS
from offpeak.errors import BatchInputInvalid, NotFound
from offpeak.ids import new_id
from offpeak.ingest.openai_files import LineChecker, ingest_file, iter_lines
from offpeak.ingest.segments import read_bodies
from offpeak.publish.exxa_jsonl import publish_ready
from offpeak.publish.openai_files import finalize_ready, is_output, output_line, write_files
from offpeak.publish.openai_objects import openai_batch_object
from offpeak.run.chunk_files import encode_results
from offpeak.schemas import BatchCreate, BatchOutputLine, JobStatus, ResultRow, Status
from offpeak.state import batches
from offpeak.state import openai as state
from offpeak.state.batches import create_batch
from offpeak.state.db import Database
from offpeak.state.jobs import create_job, update_job
from offpeak.state.models import ApiKey, Job, Request
from offpeak.storage import ObjectStore
from tests.utils.factories import add_requests

MODEL = "llama-3.1-8b-instruct-fp16"
CHAT = "/v1/chat/completions"
REGISTRY = ModelRegistry.load(PACKAGED_MODELS)


def line(custom_id: str, content: str = "Hi") -> bytes:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}
    ).encode()


def checker(max_lines: int = 100) -> LineChecker:
    return LineChecker(CHAT, REGISTRY, max_lines=max_lines, max_line_bytes=4096)


def test_lines_are_split_across_read_blocks_and_crlf_is_accepted() -> None:
    raw = [line(f"c{i}", "x" * 300) for i in range(500)]  # ~200 KB: several read blocks
    stream = io.BytesIO(b"\r\n".join(raw) + b"\r\n")
    read = list(iter_lines(stream, 4096))
    assert [n for n, _ in read] == list(range(1, 501))
    check = checker(1000)
    assert [check.check(n, text).custom_id for n, text in read] == [f"c{i}" for i in range(500)]  # type: ignore[union-attr]
    assert check.errors == []


def test_an_overlong_line_is_reported_without_being_held(store: ObjectStore, key: ApiKey) -> None:
    stream = io.BytesIO(line("a") + b"\n" + b"x" * 100_000 + b"\n" + line("b") + b"\n")
    with pytest.raises(BatchInputInvalid) as raised:
        ingest_file(store, stream, checker(), key_id=key.id, created_at=0, expires_at=60)
    assert raised.value.code == "line_too_long" and raised.value.problems[0]["line"] == 2
    assert list(store.list("requests/")) == []  # nothing left behind


def test_ingest_writes_segments_in_input_order(store: ObjectStore, key: ApiKey) -> None:
    stream = io.BytesIO(b"\n".join(line(f"c{i}", f"text {i}") for i in range(30)))
    ingested = ingest_file(store, stream, checker(), key_id=key.id, created_at=0, expires_at=60)
    ids = [rid for rid, *_ in ingested.requests]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert [cid for _, cid, *_ in ingested.requests] == [f"c{i}" for i in range(30)]
    bodies = read_bodies(store, ingested.segments[0], None)
    assert json.loads(bodies[ids[7]])["messages"][0]["content"] == "text 7"


def make_batch(
    db: Database, store: ObjectStore, key: ApiKey, custom_ids: list[str]
) -> state.NewBatch:
    """An OpenAI batch of one line per custom_id, ingested as the API does."""
    at = now()
    stream = io.BytesIO(b"\n".join(line(cid) for cid in custom_ids))
    ingested = ingest_file(
        store, stream, checker(), key_id=key.id, created_at=at, expires_at=at + 86400
    )
    new = state.NewBatch(
        id=new_id(),
        key_id=key.id,
        input_file_id="f" * 24,
        endpoint=CHAT,
        model=MODEL,
        completion_window="24h",
        metadata={},
        created_at=at,
        expires_at=at + 86400,
        requests=ingested.requests,
    )
    state.create_batch(db, new)
    return new


def finish(db: Database, store: ObjectStore, request_id: str, outcome: dict[str, Any]) -> None:
    """Record an outcome as inference does: the chunk file, then the row."""
    body = outcome.pop("body", None)
    indent = outcome.pop("indent", None)  # JSON text spread over lines, still valid
    values = {"status": outcome.pop("status"), "ended_at": now(), **outcome}
    if body is not None:
        key = f"jobs/j/chunk-{request_id}.parquet"
        row = ResultRow(
            id=request_id,
            status="completed",
            result_body=json.dumps(body, indent=indent),
            error_code="",
            error_message="",
            prompt_tokens=3,
            completion_tokens=5,
            cost_usd=0.0,
        )
        store.put(key, encode_results([row]))
        values |= {"result_key": key, "prompt_tokens": 3, "completion_tokens": 5}
    with db.session(write=True) as session:
        session.execute(update(Request).where(Request.id == request_id).values(**values))


def content(store: ObjectStore, db: Database, key: ApiKey, file_id: str | None) -> list[Any]:
    assert file_id is not None
    data = store.get(state.get_file(db, key.id, file_id).storage_key)
    lines = data.decode().splitlines()
    for text in lines:  # every line is a valid line of the schema
        BatchOutputLine.model_validate_json(text)
    return [json.loads(text) for text in lines]


COMPLETION = {"object": "chat.completion", "choices": [{"message": {"content": "hé\nho"}}]}


def test_output_and_error_lines_follow_openai_in_input_order(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    new = make_batch(db, store, key, ["r1", "r2", "r3", "r4"])
    ids = [rid for rid, *_ in new.requests]
    finish(db, store, ids[0], {"status": Status.COMPLETED, "body": COMPLETION})
    finish(
        db,
        store,
        ids[1],
        {
            "status": Status.FAILED,
            "error_code": "context_length_exceeded",
            "error_message": "the prompt is too long",
        },
    )
    finish(
        db, store, ids[2], {"status": Status.COMPLETED, "body": {**COMPLETION, "n": 3}, "indent": 2}
    )
    tally = batches.tallies(db, [new.id])[new.id]
    assert tally.pending == 1 and publish_ready(db, store) == []
    assert finalize_ready(db, store) == []
    finish(
        db,
        store,
        ids[3],
        {"status": Status.FAILED, "error_code": "expired", "error_message": "too late"},
    )
    # Ended, not yet published: `finalizing`; publishing writes its files, reads never do.
    batch = batches.get_batch(db, key.id, new.id, openai=True)
    tally = batches.tallies(db, [new.id])[new.id]
    assert openai_batch_object(batch, tally).status == "finalizing"
    assert finalize_ready(db, store) == []  # the batch itself is published first
    assert [p.batch_id for p in publish_ready(db, store)] == [new.id]
    assert finalize_ready(db, store) == [new.id]
    assert finalize_ready(db, store) == []
    batch = batches.get_batch(db, key.id, new.id, openai=True)
    shown = openai_batch_object(batch, batches.tallies(db, [new.id])[new.id])
    assert shown.status == "expired" and shown.expired_at is not None
    assert shown.completed_at is None and shown.finalizing_at is not None
    assert shown.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert shown.usage is not None and shown.usage.total_tokens == 16

    output = content(store, db, key, shown.output_file_id)
    assert [o["custom_id"] for o in output] == ["r1", "r3"]
    assert output[1]["response"]["body"] == {**COMPLETION, "n": 3}
    assert output[0] == {
        "id": f"batch_req_{ids[0]}",
        "custom_id": "r1",
        "response": {"status_code": 200, "request_id": ids[0], "body": COMPLETION},
        "error": None,
    }
    errors = content(store, db, key, shown.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r4"]
    refused, expired = errors
    assert refused["error"] is None and refused["response"]["status_code"] == 400
    assert refused["response"]["body"]["error"] == {
        "message": "the prompt is too long",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }
    assert expired["response"] is None
    assert expired["error"] == {"code": "batch_expired", "message": "too late"}


def test_absent_files_are_null_and_files_are_written_once(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    failed = make_batch(db, store, key, ["a", "b"])
    for rid, *_ in failed.requests:
        finish(db, store, rid, {"status": Status.FAILED, "error_code": "job_failed"})
    batch = batches.get_batch(db, key.id, failed.id, openai=True)
    tally = batches.tallies(db, [failed.id])[failed.id]
    assert write_files(db, store, batch, tally) is True
    assert write_files(db, store, batch, tally) is False  # already recorded
    batch = batches.get_batch(db, key.id, failed.id, openai=True)
    shown = openai_batch_object(batch, tally)
    assert shown.status == "completed" and shown.output_file_id is None
    errors = content(store, db, key, shown.error_file_id)
    assert errors[0]["response"]["status_code"] == 500
    assert errors[0]["response"]["body"]["error"]["type"] == "server_error"
    assert len(state.list_files(db, key.id, limit=10)) == 1
    assert len(list(store.list("openai/"))) == 1  # the losing writer removed its copy


def test_lines_are_pydantic_models_encoded_as_one_compact_line() -> None:
    completed = output_line("r1", "c-é", "completed", '{\n  "a": [1, 2.5, "é"]\n}', None, None)
    assert (
        to_json(completed)
        == (
            '{"id":"batch_req_r1","custom_id":"c-é","response":{"status_code":200,'
            '"request_id":"r1","body":{"a":[1,2.5,"é"]}},"error":null}'
        ).encode()
    )
    cancelled = output_line("r2", "c2", "cancelled", None, None, None)
    assert to_json(cancelled) == (
        b'{"id":"batch_req_r2","custom_id":"c2","response":null,"error":'
        b'{"code":"batch_cancelled","message":"the batch was cancelled before it ran"}}'
    )
    refused = output_line("r3", "c3", "failed", None, "invalid_request", "bad")
    assert to_json(refused) == (
        b'{"id":"batch_req_r3","custom_id":"c3","response":{"status_code":400,'
        b'"request_id":"r3","body":{"error":{"message":"bad","type":"invalid_request_error",'
        b'"param":null,"code":"invalid_request"}}},"error":null}'
    )
    assert is_output(completed) and not is_output(cancelled) and not is_output(refused)


def test_a_cancelled_batch_gets_its_files_without_its_results_file(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    new = make_batch(db, store, key, ["done", "never"])
    done, never = (rid for rid, *_ in new.requests)
    finish(db, store, done, {"status": Status.COMPLETED, "body": COMPLETION})
    batches.cancel_batch(db, key.id, new.id, now())  # the EXXA route: the same batch

    batch = batches.get_batch(db, key.id, new.id, openai=True)
    assert batch.openai is not None and batch.openai.cancelling_at is not None
    assert openai_batch_object(batch, batches.tallies(db, [new.id])[new.id]).status == (
        "cancelling"
    )
    assert publish_ready(db, store) == []  # cancelled: no EXXA results file
    assert finalize_ready(db, store) == [new.id]

    batch = batches.get_batch(db, key.id, new.id, openai=True)
    shown = openai_batch_object(batch, batches.tallies(db, [new.id])[new.id])
    assert shown.status == "cancelled" and shown.cancelled_at is not None
    assert shown.request_counts.model_dump() == {"total": 2, "completed": 1, "failed": 1}
    assert [o["response"]["request_id"] for o in content(store, db, key, shown.output_file_id)] == [
        done
    ]
    (error,) = content(store, db, key, shown.error_file_id)
    assert error["id"] == f"batch_req_{never}" and error["error"]["code"] == "batch_cancelled"


def test_get_and_list_are_the_batches_own_filtered_to_openai_views(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    made = [make_batch(db, store, key, ["a"]).id for _ in range(2)]
    plain = create_batch(db, key.id, BatchCreate(requests_ids=add_requests(db, key.id)), now())
    assert plain.openai is None
    with pytest.raises(NotFound):
        batches.get_batch(db, key.id, plain.id, openai=True)
    assert batches.get_batch(db, key.id, made[0]).openai is not None  # EXXA sees it too
    newest = batches.list_batches(db, key.id, order="desc", openai=True)
    assert [b.id for b in newest] == made[::-1]
    older = batches.list_batches(db, key.id, after=made[1], order="desc", openai=True)
    assert [b.id for b in older] == [made[0]]
    every = batches.list_batches(db, key.id)
    assert {b.id: b.openai is not None for b in every} == {
        made[0]: True,
        made[1]: True,
        plain.id: False,
    }


def test_a_cancelled_batch_gets_its_files_once_its_running_job_ends(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    new = make_batch(db, store, key, ["running", "waiting"])
    running = new.requests[0][0]
    job = Job(
        id=new_id(),
        model=MODEL,
        deployment="d",
        status=JobStatus.RUNNING.value,
        manifest_key="m",
        request_count=0,
        created_at=now(),
    )
    assert create_job(db, job, [running], now()) == 1
    batches.cancel_batch(db, key.id, new.id, now())
    assert finalize_ready(db, store, [new.id]) == []  # what the cancel route tries
    assert finalize_ready(db, store) == []
    update_job(db, job.id, status=JobStatus.COMPLETED.value)
    assert finalize_ready(db, store) == [new.id]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": '
            b'{"model": "llama-3.1-8b-instruct-fp16", "messages": [{"role": "user", '
            b'"content": "hi"}], "temperature": NaN}}',
            "non_finite_number",
        ),
        (
            b'{"custom_id": "a\\u0000", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"model": "llama-3.1-8b-instruct-fp16", "messages": [{"role": "user", '
            b'"content": "hi"}]}}',
            "nul_character",
        ),
    ],
    ids=["nan", "nul"],
)
def test_a_line_no_store_can_keep_is_refused_with_its_code(raw: bytes, code: str) -> None:
    check = checker()
    assert check.check(1, raw) is None
    assert [e.code for e in check.errors] == [code]
