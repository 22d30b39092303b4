"""Batch and request objects carry the scheduler's expected start and completion times
(null until the scheduler plans their work), on both stacks."""

from __future__ import annotations

import httpx

from offpeak.clock import now
from offpeak.plan.expected import Expected, minute_of
from offpeak.state import expectations
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, lines, submit


def test_batches_and_requests_show_the_plans_expected_times(
    live_api: LiveApi, api: httpx.Client
) -> None:
    ids = sorted(submit(api, f"q{i}")["id"] for i in range(2))
    batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
    assert (batch["expected_start_at"], batch["expected_completion_at"]) == (None, None)
    request = api.get(f"/v1/requests/{ids[0]}").json()
    assert (request["expected_start_at"], request["expected_completion_at"]) == (None, None)

    at = now()
    minute = minute_of(request["expires_at"])
    expectations.record(live_api.db, [Expected(MODEL, minute, at + 60, at + 900)], at)

    got = api.get(f"/v1/batches/{batch['id']}").json()
    assert (got["expected_start_at"], got["expected_completion_at"]) == (at + 60, at + 900)
    [listed] = [b for b in lines(api.get("/v1/batches")) if b["id"] == batch["id"]]
    assert listed["expected_completion_at"] == at + 900
    request = api.get(f"/v1/requests/{ids[0]}").json()
    assert (request["expected_start_at"], request["expected_completion_at"]) == (at + 60, at + 900)

    cancelled = api.post(f"/v1/batches/{batch['id']}/cancel").json()
    assert (cancelled["expected_start_at"], cancelled["expected_completion_at"]) == (None, None)
    assert api.get(f"/v1/requests/{ids[0]}").json()["expected_start_at"] is None
