"""The scheduler's tasks on their own (called with ``.fn``: no Prefect server): the
planning task reads the settings' provider and policy through the one wiring."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from offpeak.clock import now
from offpeak.config import Settings
from offpeak.ingest.sealing import seal_all
from tasks.runtime import runtime
from tasks.scheduling import plan_launches, summary
from tests.utils.factories import add_requests, new_key


@pytest.fixture
def scheduler_env(task_env: Callable[..., Settings]) -> Settings:
    return task_env(OFFPEAK_SCHEDULER_POLICY="carbon")


def test_the_scheduler_plans_with_the_replayed_forecast(scheduler_env: Settings) -> None:
    rt = runtime()
    key = new_key(rt.db)[0]
    add_requests(rt.db, key.id, 3, at=now(), completion_window="10m")
    add_requests(rt.db, key.id, 2, at=now(), completion_window="72h")
    seal_all(rt.db, rt.store, 1000)
    planned = plan_launches.fn()
    # The 10-minute requests cannot wait; the 72-hour ones wait for the cleanest hours
    # of the replayed GB trace, unless the current hour is that.
    (due,) = [launch for launch in planned.launches if launch.max_requests == 3]
    assert due.expires_between is not None and due.expires_between[1] <= now() + 600
    assert "## Pool `local` (zone GB, inference/local)" in planned.report
    assert "Forecast (replay" in planned.report
    assert summary([due]) == [
        {
            "engine_model": "tiny-chat",
            "models": ("llama-3.1-8b-instruct-fp16",),
            "pool": "local",
            "max_requests": 3,
        }
    ]
