"""`GET /metrics` of the served stack once a batch has run: the state figures equal the
state DB's, the completed job's tokens, wall time and energy are exported, and the
scheduler's ticks are seen."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from offpeak.state.metrics import read_state_metrics
from tests.e2e.conftest import Stack
from tests.e2e.test_pipeline import MODEL, jobs_of, submit, wait_batch
from tests.utils.metrics import documented, parse, state_mismatches, value
from tests.utils.services import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_metrics_after_a_batch_completes_equal_the_state_db(stack: Stack) -> None:
    with stack.client(stack.new_key()) as api:
        ids = [submit(api, f"Count me in {i}", max_tokens=8, seed=i) for i in range(4)]
        batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
        assert wait_batch(api, batch["id"])["status"] == "completed"
    jobs = jobs_of(stack, ids)  # one, or two when a tick came while they were sent
    assert jobs and all(j.pool and j.completion_tokens > 0 and j.energy_kwh for j in jobs)

    last: dict[str, Any] = {}

    def agrees() -> bool:
        state = read_state_metrics(stack.db)
        families = parse(httpx.get(f"{stack.base_url}/metrics", timeout=10).text)
        last.update(families=families, state=state, wrong=state_mismatches(families, state))
        return not last["wrong"]

    try:  # the stack keeps ticking: compare once both reads agree
        wait_for(agrees, "the served metrics to match the state database", timeout=120)
    except RuntimeError as exc:
        raise AssertionError(last["wrong"]) from exc
    families = last["families"]
    assert set(families) <= set(documented())
    assert value(families, "offpeak_batches", status="completed") >= 1
    assert value(families, "offpeak_requests", status="completed", model=MODEL) >= 4
    ((model, pool),) = {(j.model, j.pool) for j in jobs}
    labels = {"model": model, "pool": pool}
    assert value(families, "offpeak_job_runs_total", "_total", **labels) >= len(jobs)
    assert value(families, "offpeak_job_completion_tokens_total", "_total", **labels) >= sum(
        j.completion_tokens for j in jobs
    )
    assert value(families, "offpeak_carbon_emitted_grams_total", "_total") > 0
    # The scheduler ticks every 3 s here; its last tick is recent.
    tick = value(families, "offpeak_scheduler_last_tick_timestamp_seconds")
    assert 0 < time.time() - tick < 120
