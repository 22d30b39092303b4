"""The scheduler's plan gives waiting work its expected times (``.fn``: no Prefect
server), with the replayed forecast the settings name."""

from __future__ import annotations

from collections.abc import Callable

from offpeak.clock import now
from offpeak.config import Settings
from offpeak.ingest.sealing import seal_all
from offpeak.schemas import BatchCreate
from offpeak.state import batches, expectations
from offpeak.state.requests import get_request
from tasks.progress import record_expected_times
from tasks.runtime import runtime
from tasks.scheduling import plan_launches
from tests.utils.factories import add_requests, new_key


def test_the_ticks_plan_gives_batches_and_requests_their_expected_times(
    task_env: Callable[..., Settings],
) -> None:
    task_env(OFFPEAK_SCHEDULER_POLICY="carbon")
    rt = runtime()
    key = new_key(rt.db)[0]
    at = now()
    urgent = add_requests(rt.db, key.id, 2, at=at, completion_window="10m")
    relaxed = add_requests(rt.db, key.id, 2, at=at, completion_window="72h")
    batch = batches.create_batch(rt.db, key.id, BatchCreate(requests_ids=urgent + relaxed), at)
    seal_all(rt.db, rt.store, 1000)
    assert record_expected_times.fn(plan_launches.fn()) >= 2

    due = expectations.for_request(rt.db, get_request(rt.db, key.id, urgent[0]))
    assert due.start_at is not None and due.start_at <= now()  # cannot wait: runs now
    assert due.completion_at is not None and due.start_at < due.completion_at <= at + 600
    wait = expectations.for_request(rt.db, get_request(rt.db, key.id, relaxed[0]))
    assert wait.start_at is not None and wait.completion_at is not None
    assert due.start_at <= wait.start_at < wait.completion_at <= at + 72 * 3600
    shown = expectations.for_batches(rt.db, [batch.id])[batch.id]
    assert shown == expectations.Times(due.start_at, wait.completion_at)


def test_the_immediate_policy_starts_now_with_no_known_end(
    task_env: Callable[..., Settings],
) -> None:
    task_env(OFFPEAK_SCHEDULER_POLICY="immediate")
    rt = runtime()
    key = new_key(rt.db)[0]
    [rid] = add_requests(rt.db, key.id, 1, at=now())
    seal_all(rt.db, rt.store, 1000)
    record_expected_times.fn(plan_launches.fn())
    shown = expectations.for_request(rt.db, get_request(rt.db, key.id, rid))
    assert shown.start_at is not None and abs(shown.start_at - now()) <= 5
    assert shown.completion_at is None
