"""A job is run by one run at a time: its lease, its heartbeat, and the takeover of a
run gone silent, on the real databases and stores (the engine is the fake one)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings, load_settings
from offpeak.errors import JobLeaseLost
from offpeak.run.chunk_files import chunk_key, read_results
from offpeak.run.lease import JobLease
from offpeak.run.runner import JobRunner
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Job
from offpeak.storage import ObjectStore
from tests.offpeak.run.test_pipeline_core import funded, open_one, registry, submit
from tests.utils.fake_engine import FakeEngine

__all__ = ["funded", "registry"]  # fixtures


@pytest.fixture
def lease_settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", chunk_size=2, job_lease_seconds=6)


def expire(db: Database, job_id: str) -> None:
    """The holder went silent: its lease ran out."""
    with db.session(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=0))


def test_a_job_held_by_a_live_lease_is_not_run_by_a_second_run(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    lease_settings: Settings,
    funded: ApiKey,
) -> None:
    submit(db, store, funded.id, ["a", "b"])
    job = open_one(db, store, registry)
    first = JobLease(db, job.id, 60)
    first.take("first")
    engine = FakeEngine()
    with pytest.raises(JobLeaseLost):
        JobRunner(db, store, registry, lease_settings, lambda: engine).run(job.id)
    assert engine.calls == [] and not store.exists(chunk_key(job.id, 0))
    first.check()  # still the holder
    first.release()


def test_a_silent_run_is_taken_over_and_stops_before_its_next_chunk(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    lease_settings: Settings,
    funded: ApiKey,
) -> None:
    ids = submit(db, store, funded.id, [f"p {i}" for i in range(6)])
    job = open_one(db, store, registry)
    gate, running = threading.Event(), threading.Event()

    class Stalled(FakeEngine):
        """Runs its first chunk, then stalls in the second (a paused process)."""

        def run(self, requests):  # type: ignore[no-untyped-def]
            if self.calls:
                running.set()
                gate.wait(30)
            return super().run(requests)

    stalled = Stalled()
    errors: list[BaseException] = []

    def old_run() -> None:
        try:
            JobRunner(db, store, registry, lease_settings, lambda: stalled).run(job.id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=old_run)
    thread.start()
    assert running.wait(30)
    expire(db, job.id)
    state.update_job(db, job.id, lease_owner=None)  # the scheduler's relaunch revokes it
    fresh = FakeEngine()
    JobRunner(db, store, registry, lease_settings, lambda: fresh).run(job.id)
    gate.set()
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], JobLeaseLost)
    # The old run ran chunk 0 and (stalled) chunk 1; the new one skipped chunk 0 and ran
    # the rest; whoever saved chunk 1 first is the one that counts; chunk 2 ran once.
    assert len(stalled.calls) == 2 and sorted(ids)[4:] in fresh.calls
    ran = [r.id for i in range(3) for r in read_results(store, chunk_key(job.id, i))]
    assert sorted(ran) == sorted(ids)
    assert state.get_job(db, job.id).status == "completed"


def test_the_heartbeat_keeps_a_long_job_held(
    db: Database,
    store: ObjectStore,
    registry: ModelRegistry,
    funded: ApiKey,
) -> None:
    submit(db, store, funded.id, ["a"])
    job = open_one(db, store, registry)
    lease = JobLease(db, job.id, 6)
    lease.take("runner")
    first = state.get_job(db, job.id).lease_expires_at
    time.sleep(3.5)  # past one beat (a third of the lease)
    assert (state.get_job(db, job.id).lease_expires_at or 0) > (first or 0)
    lease.check()
    lease.complete()
    done = state.get_job(db, job.id)
    assert done.status == "completed" and done.lease_expires_at is None
