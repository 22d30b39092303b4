"""Carbon accounting: the arithmetic, and a finished job's footprint recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from offpeak.carbon import ReplayProvider
from offpeak.carbon.traces import load_trace, shipped_traces
from offpeak.catalog.pools import PoolSpec, load_pools, pool_of_deployment
from offpeak.clock import now
from offpeak.config import PACKAGED_POOLS
from offpeak.run.accounting import job_carbon, request_carbon, saved_pct
from offpeak.run.footprint import record_job_footprint
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.models import Job, Request

POOL = PoolSpec(
    deployment="inference/x", zone="DE", gpus=8, watts_per_gpu=700, pue=1.2,
    max_concurrent_jobs=2, startup_seconds=60,
)  # fmt: skip


def test_energy_is_gpus_times_watts_times_time_times_pue() -> None:
    assert POOL.energy_kwh(3600) == pytest.approx(8 * 700 * 1.2 / 1000)
    footprint = job_carbon(POOL, 1800, intensity=300)
    assert footprint.energy_kwh == pytest.approx(3.36)
    assert footprint.gco2e == pytest.approx(3.36 * 300)


def test_requests_share_a_job_by_tokens_against_their_own_baseline() -> None:
    footprint = job_carbon(POOL, 3600, intensity=100)
    shares = request_carbon(footprint, {"a": 300, "b": 100}, {"a": 400, "b": 100})
    a, b = shares
    assert a.gco2e + b.gco2e == pytest.approx(footprint.gco2e)
    assert a.gco2e == pytest.approx(3 * b.gco2e)
    assert a.baseline_gco2e == pytest.approx(footprint.energy_kwh * 0.75 * 400)
    assert saved_pct(a.gco2e, a.baseline_gco2e) == pytest.approx(75.0)
    assert saved_pct(b.gco2e, b.baseline_gco2e) == pytest.approx(0.0)
    assert saved_pct(1.0, 0.0) == 0.0


def test_the_default_pools_file_names_a_shipped_zone() -> None:
    pools = load_pools(PACKAGED_POOLS)
    assert next(iter(pools.values())).zone in shipped_traces()
    example = load_pools(Path(__file__).resolve().parents[3] / "infra" / "pools.example.yaml")
    assert len(example) >= 3 and set(p.zone for p in example.values()) <= set(shipped_traces())
    assert pool_of_deployment(example, "inference/eu-central")[0] == "eu-central"


def test_a_finished_job_records_its_footprint_and_each_requests_share(db: Database) -> None:
    from offpeak.state.requests import insert_requests, new_request_row
    from tests.utils.factories import new_key, request_create

    key = new_key(db)[0]
    start = now() - 7200
    start -= start % 3600  # the run stays within one clock hour
    rows = [new_request_row(key.id, request_create(f"p{i}"), start - 3600) for i in range(2)]
    insert_requests(db, rows)
    job = Job(
        id="0" * 24, model="tiny-chat", deployment="inference/local", status="completed",
        manifest_key="m", request_count=2, attempts=1, created_at=start, started_at=start,
        ended_at=start + 600, wall_seconds=600.0, prompt_tokens=0, completion_tokens=0,
    )  # fmt: skip
    with db.session(write=True) as session:
        session.add(job)
        session.flush()
        for i, row in enumerate(rows):
            request = session.get(Request, row["id"])
            assert request is not None
            request.job_id, request.status = job.id, "completed"
            request.prompt_tokens, request.completion_tokens = 10 * (i + 1), 10
    pools = load_pools(PACKAGED_POOLS)
    footprint = record_job_footprint(db, ReplayProvider(), pools, job.id)
    assert footprint is not None and footprint.gco2e > 0
    trace = load_trace(shipped_traces()["GB"])
    from datetime import UTC, datetime

    seen = trace.intensity[trace.index_of(datetime.fromtimestamp(start - start % 3600, UTC))]
    assert footprint.intensity == pytest.approx(seen)
    stored = state.get_job(db, job.id)
    assert (stored.pool, stored.zone) == ("local", "GB")
    with db.session() as session:
        shares = [session.get(Request, r["id"]) for r in rows]
    assert sum(s.gco2e or 0 for s in shares if s) == pytest.approx(footprint.gco2e)
    assert all(
        s and s.baseline_gco2e and s.carbon_zone == "GB" and s.ran_at == start for s in shares
    )
