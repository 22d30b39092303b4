"""Embeddings requests through the job machinery: sealed, claimed, run by the real
vLLM embedding engine in chunks, billed and published.

Real databases and stores; the engine is the session's all-MiniLM-L6-v2 engine.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offpeak.catalog.models import ModelRegistry
from offpeak.clock import now
from offpeak.config import PACKAGED_MODELS, Settings, load_settings
from offpeak.engine import EngineRequest
from offpeak.engine.embeddings import decode_base64
from offpeak.engine.vllm_embed import EmbedEngine
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import publish_ready
from offpeak.publish.objects import request_objects
from offpeak.run.chunk_files import chunk_key, read_results
from offpeak.run.launch import open_job
from offpeak.run.runner import JobRunner
from offpeak.schemas import BatchCreate, EmbeddingRequest, JobStatus, Status
from offpeak.state import jobs as state
from offpeak.state.batches import create_batch
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.state.requests import get_request, insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.offpeak.conftest import EMBED_MODEL
from tests.utils.factories import chat_body, new_key, request_create

pytestmark = pytest.mark.vllm

TOO_LONG = "word " * 300


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry.load(PACKAGED_MODELS)


@pytest.fixture
def job_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=2)


def embed_row(key_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A stored request whose body is an embeddings request (what the OpenAI routes store)."""
    row = new_request_row(key_id, request_create("unused"), now())
    row["model"] = body["model"]
    row["body"] = json.dumps(body)
    return row


def submit(
    db: Database, store: ObjectStore, key_id: str, bodies: list[dict[str, Any]]
) -> list[str]:
    rows = [embed_row(key_id, b) for b in bodies]
    for body in bodies:
        if body.get("input") is not None:
            EmbeddingRequest.model_validate(body)  # the bodies the API would accept
    insert_requests(db, rows)
    seal_all(db, store, 1000)
    return [r["id"] for r in rows]


def test_embed_requests_run_as_a_job_billed_and_published(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    embed_engine: EmbedEngine,
) -> None:
    key: ApiKey = new_key(db, "10")[0]
    bodies = [
        {"model": EMBED_MODEL, "input": "Clean power at night."},
        {"model": EMBED_MODEL, "input": ["first text", "second text"], "encoding_format": "base64"},
        {"model": EMBED_MODEL, "input": TOO_LONG},
        {"model": EMBED_MODEL, "input": [101, 7592, 2088, 102]},
        # A chat body stored under the embedding model: refused, the job goes on.
        chat_body("hello", model=EMBED_MODEL),
    ]
    ids = submit(db, store, key.id, bodies)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=ids), now())
    (group,) = pending_groups(db, registry)
    assert (group.engine_model, group.count) == (EMBED_MODEL, 5)
    job = open_job(db, store, group, max_requests=100, deployment="inference/local", at=now())
    assert job is not None

    runner = JobRunner(db, store, registry, job_settings, lambda: embed_engine)
    report = runner.run(job.id)

    assert report.chunks == 3 and report.requests == 5
    rows = {i: get_request(db, key.id, i) for i in ids}
    one, two, long_one, tokens, chat = (rows[i] for i in ids)
    assert [r.status for r in (one, two, tokens)] == ["completed"] * 3
    assert (long_one.status, long_one.error_code) == ("failed", "context_length_exceeded")
    assert (chat.status, chat.error_code) == ("failed", "invalid_request")
    assert "embed model" in (chat.error_message or "")
    assert long_one.cost_usd == 0 and chat.cost_usd == 0

    # Billing: prompt tokens at the input price, nothing for output.
    price = Decimal(str(registry.get(EMBED_MODEL).price_input_per_1m))
    assert tokens.prompt_tokens == 4 and tokens.completion_tokens == 0
    for row in (one, two, tokens):
        assert row.prompt_tokens
        # Stored costs have 8 decimals: a few tokens cost less than that, rounded.
        assert row.cost_usd is not None
        assert abs(row.cost_usd - row.prompt_tokens * price / 1_000_000) <= Decimal("5e-9")
    done = state.get_job(db, job.id)
    assert done.status == "completed" and done.completion_tokens == 0
    assert (
        done.prompt_tokens
        == report.prompt_tokens
        == sum(r.prompt_tokens or 0 for r in rows.values())
    )

    # Results: OpenAI embeddings bodies, read back from the chunk files.
    first, second, fourth = (
        request_objects(store, [rows[i]])[0].result_body for i in (ids[0], ids[1], ids[3])
    )
    assert first is not None and second is not None and fourth is not None
    assert first["object"] == "list" and first["model"] == EMBED_MODEL
    assert first["usage"] == {"prompt_tokens": one.prompt_tokens, "total_tokens": one.prompt_tokens}
    vector = np.array(first["data"][0]["embedding"])
    assert vector.shape == (384,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert [d["index"] for d in second["data"]] == [0, 1]
    assert all(decode_base64(d["embedding"]).shape == (384,) for d in second["data"])
    hello_world = np.array(fourth["data"][0]["embedding"])  # [CLS] hello world [SEP]
    [direct] = embed_engine.run(
        [EngineRequest("x", EMBED_MODEL, EmbeddingRequest.model_validate(bodies[3]))]
    )
    assert direct.result_body is not None
    np.testing.assert_array_equal(hello_world, direct.result_body["data"][0]["embedding"])

    # Published with the batch: one JSONL line per request, embeddings included.
    (published,) = publish_ready(db, store)
    assert published.batch_id == batch.id and published.status == Status.COMPLETED
    lines = [json.loads(line) for line in store.get(published.key).splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert by_id[ids[0]]["result_body"]["data"][0]["embedding"] == first["data"][0]["embedding"]
    assert by_id[ids[0]]["request_body"] == bodies[0]
    assert by_id[ids[2]]["error"]["code"] == "context_length_exceeded"


def test_a_restarted_embed_job_reuses_finished_chunks(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    job_settings: Settings,
    embed_engine: EmbedEngine,
) -> None:
    key: ApiKey = new_key(db, "10")[0]
    ids = submit(
        db, store, key.id, [{"model": EMBED_MODEL, "input": f"text {i}"} for i in range(3)]
    )
    (group,) = pending_groups(db, registry)
    job = open_job(db, store, group, max_requests=100, deployment="inference/local", at=now())
    assert job is not None
    JobRunner(db, store, registry, job_settings, lambda: embed_engine).run(job.id)
    first = read_results(store, chunk_key(job.id, 0))
    # The run died after its last chunk, before marking the job done: its lease ran out.
    state.update_job(db, job.id, status=JobStatus.RUNNING, lease_expires_at=0)
    report = JobRunner(db, store, registry, job_settings, lambda: embed_engine).run(job.id)
    assert report.chunks_skipped == 2 and report.engine_start_seconds == 0
    assert read_results(store, chunk_key(job.id, 0)) == first
    assert {get_request(db, key.id, i).status for i in ids} == {"completed"}
