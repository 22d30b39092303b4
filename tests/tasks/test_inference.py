"""The inference task on its own (``.fn``: no Prefect server; the engine is the fake one,
the progress artifacts stand-ins): a job's batches publish before its engine stops, and
whatever the Prefect server does with its progress."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from offpeak.clock import now
from offpeak.config import Settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import pending_groups
from offpeak.publish.exxa_jsonl import results_key
from offpeak.run.launch import open_job
from offpeak.schemas import BatchCreate, Status
from offpeak.state import batches
from tasks import inference, publishing
from tasks.runtime import runtime
from tests.utils.factories import add_requests, new_key
from tests.utils.fake_engine import FakeEngine


class StoppingEngine(FakeEngine):
    """The fake engine, noting the batch's status when it is stopped."""

    def __init__(self, key_id: str, batch_id: str) -> None:
        super().__init__()
        self.key_id, self.batch_id = key_id, batch_id
        self.batch_status_at_close: str | None = None

    def close(self) -> None:
        batch = batches.get_batch(runtime().db, self.key_id, self.batch_id)
        self.batch_status_at_close = batch.status
        super().close()


def open_one_job(key_id: str, ids: list[str]) -> tuple[str, str]:
    """A batch of ``ids`` and the job that runs them: their ids."""
    rt = runtime()
    batch = batches.create_batch(rt.db, key_id, BatchCreate(requests_ids=ids), now())
    seal_all(rt.db, rt.store, 1000)
    (group,) = pending_groups(rt.db, rt.registry)
    job = open_job(rt.db, rt.store, group, max_requests=10, deployment="inference/local", at=now())
    assert job is not None
    return batch.id, job.id


@pytest.fixture
def no_artifacts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "create_progress_artifact", lambda *_, **__: None)
    monkeypatch.setattr(inference, "update_progress_artifact", lambda *_, **__: None)
    monkeypatch.setattr(inference, "publish_ready_batches", publishing.publish_ready_batches.fn)


def test_a_job_publishes_its_batches_before_its_engine_stops(
    task_env: Callable[..., Settings], no_artifacts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_env()
    rt = runtime()
    key = new_key(rt.db)[0]
    ids = add_requests(rt.db, key.id, 3)
    batch_id, job_id = open_one_job(key.id, ids)
    engine = StoppingEngine(key.id, batch_id)
    monkeypatch.setattr(inference, "open_engine", lambda *_: engine)

    report = inference.run_job.fn(job_id)

    assert engine.closed and engine.batch_status_at_close == Status.COMPLETED
    batch = batches.get_batch(rt.db, key.id, batch_id)
    assert report["published"] == [results_key(batch)] and report["requests"] == 3


def test_a_stalled_or_failing_progress_artifact_holds_nothing_up(
    task_env: Callable[..., Settings], no_artifacts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_env()
    rt = runtime()
    key = new_key(rt.db)[0]
    batch_id, job_id = open_one_job(key.id, add_requests(rt.db, key.id, 2))
    monkeypatch.setattr(inference, "open_engine", lambda *_: FakeEngine())
    seen: list[str] = []

    def stalled(*_: object, **__: object) -> str:
        # The Prefect server answers only once the batch is out (or gives up at 10 s).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = batches.get_batch(rt.db, key.id, batch_id).status
            if status == Status.COMPLETED:
                break
            time.sleep(0.05)
        seen.append(status)
        return "0b2d3c6e-9a52-4f0e-8f3c-2d7f0c1e5a11"

    def failing(*_: object, **__: object) -> None:
        raise ConnectionError("the Prefect server is gone")

    monkeypatch.setattr(inference, "create_progress_artifact", stalled)
    monkeypatch.setattr(inference, "update_progress_artifact", failing)

    report = inference.run_job.fn(job_id)

    assert seen == [Status.COMPLETED] and report["requests"] == 2
