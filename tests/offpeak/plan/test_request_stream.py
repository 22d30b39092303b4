"""Small work as the service really gets it: a few requests to the default model on the
default pool, planned from the embedded GB replay, on a real state database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from offpeak.carbon import ReplayProvider
from offpeak.catalog.models import ModelRegistry
from offpeak.catalog.pools import load_pools
from offpeak.config import load_settings
from offpeak.ingest.sealing import seal_all
from offpeak.plan.gather import decide, gather
from offpeak.plan.policy import carbon
from offpeak.services import Services
from offpeak.state.db import Database
from offpeak.storage import LocalStore
from tests.utils.factories import add_requests, new_key

# The evening the issue was measured on: on the GB replay, the night after is clean
# (202 gCO2e/kWh at 02:00) and 20:00 the next day dirty (297, against 233 now).
SENT = datetime(2026, 12, 4, 21, 14, 30, tzinfo=UTC)


@pytest.fixture
def services(db: Database, tmp_path: Path) -> Services:
    settings = load_settings(data_dir=tmp_path / "data", scheduler_policy="carbon")
    registry = ModelRegistry.load(settings.models_path)
    return Services(settings, db, LocalStore(tmp_path / "objects"), registry)


def test_thirty_small_requests_wait_for_the_clean_night_not_their_last_hour(
    services: Services,
) -> None:
    add_requests(services.db, new_key(services.db)[0].id, 30, at=int(SENT.timestamp()))
    seal_all(services.db, services.store, 1000)
    specs = load_pools(services.settings.pools_path)
    tick = gather(services, specs, ReplayProvider(now=lambda: SENT), SENT)
    assert sum(g.count for g in tick.groups) == 30

    plan = carbon(tick).plan
    assert plan is not None and plan.launch == [] and plan.late == []
    (job,) = plan.jobs  # far below the minimum job size: one job, one start-up
    assert job.count == 1 and job.reason == "aggregating"
    night = SENT.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    assert night <= job.start < night + timedelta(hours=6)
    assert job.expected_gco2e is not None and job.baseline_gco2e is not None
    assert job.expected_gco2e < job.baseline_gco2e

    report = decide(tick, "carbon").report
    saving = re.search(r"Expected saving: (-?[\d.]+)% ", report)
    assert saving is not None and float(saving.group(1)) > 10.0
    assert f"| {job.group} | 30 | {job.start:%H:%M} (+1d) |" in report
