"""The scheduler's tasks on their own (called with ``.fn``: no Prefect server): the
planning task reads the settings' provider and policy through the one wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offpeak.clock import now
from offpeak.config import Settings, get_settings
from offpeak.ingest.sealing import seal_all
from offpeak.state.db import upgrade
from tasks.runtime import runtime
from tasks.scheduling import plan_launches, summary
from tests.utils.factories import add_requests, new_key


@pytest.fixture
def scheduler_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("OFFPEAK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OFFPEAK_SCHEDULER_POLICY", "carbon")
    for name in ("OFFPEAK_DATABASE_URL", "OFFPEAK_STORAGE_URL", "OFFPEAK_CARBON_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    runtime.cache_clear()
    upgrade(get_settings().database_url)
    yield get_settings()
    runtime().db.dispose()
    runtime.cache_clear()
    get_settings.cache_clear()


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
