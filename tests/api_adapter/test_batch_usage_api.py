"""Batch objects carry, beside `request_counts`, the tokens of the requests run so far."""

from __future__ import annotations

from decimal import Decimal

import httpx

from offpeak.clock import now
from offpeak.ids import new_id
from offpeak.schemas import JobStatus, Status
from offpeak.state import jobs
from offpeak.state.models import Job
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import lines, submit


def test_a_batch_shows_the_tokens_of_its_requests_so_far(
    live_api: LiveApi, api: httpx.Client
) -> None:
    ids = sorted(submit(api, f"q{i}")["id"] for i in range(3))
    batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
    assert batch["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}

    # Two of them run (as the runner records a chunk), the third still waits.
    job = Job(
        id=new_id(),
        model="m",
        deployment="d",
        status=JobStatus.RUNNING,
        manifest_key="k",
        request_count=2,
        attempts=0,
        created_at=now(),
        prompt_tokens=0,
        completion_tokens=0,
    )
    assert jobs.create_job(live_api.db, job, ids[:2], now()) == 2
    outcomes = [
        jobs.Outcome(ids[0], Status.COMPLETED, 11, 5, Decimal("0.0001"), None, None),
        jobs.Outcome(ids[1], Status.COMPLETED, 13, 7, Decimal("0.0001"), None, None),
    ]
    jobs.apply_outcomes(live_api.db, job.id, "chunks/x", outcomes, now())

    got = api.get(f"/v1/batches/{batch['id']}").json()
    assert got["usage"] == {"prompt_tokens": 24, "completion_tokens": 12}
    assert got["request_counts"]["completed"] == 2 and got["request_counts"]["registered"] == 1
    [listed] = [b for b in lines(api.get("/v1/batches")) if b["id"] == batch["id"]]
    assert listed["usage"] == got["usage"]
