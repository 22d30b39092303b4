"""Launch policies and the scheduler's view of pending work: token estimates, units by
deadline, the carbon policy's launches, the plan report."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings
from offpeak.ingest.estimate import estimate_tokens
from offpeak.ingest.sealing import seal_all
from offpeak.plan.pending import PendingGroup, PendingUnit, pending_groups
from offpeak.plan.planner import Pool
from offpeak.plan.policy import Tick, carbon, immediate
from offpeak.plan.report import plan_markdown, sparkline
from offpeak.run.launch import open_job
from offpeak.state import jobs as state
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.utils.factories import chat_request, request_create

MODEL = "llama-3.1-8b-instruct-fp16"  # a stand-in for tiny-chat
MINUTE = 60
T0 = 1_700_000_000 - 1_700_000_000 % 3600 + 5  # a few seconds into an hour
POOL = Pool("local", "inference/local", "GB", max_concurrent_jobs=4, startup_seconds=30)


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry.load(settings.models_path)


def submit(db: Database, store: ObjectStore, rows: list[tuple[str, str, int]]) -> list[str]:
    """Requests of (model, completion window, created_at), sealed."""
    key = create_key(db, "team", 10)[0]
    created = [
        new_request_row(key.id, request_create("x" * 40, model=m, completion_window=w), at)
        for m, w, at in rows
    ]
    insert_requests(db, created)
    seal_all(db, store, 1000)
    return [r["id"] for r in created]


def test_estimate_counts_prompt_characters_and_every_completion() -> None:
    body = chat_request("x" * 400, max_tokens=100, n=2)
    assert estimate_tokens(body) == 400 // 4 + 4 + 2 * 100
    parts = chat_request([{"type": "text", "text": "y" * 80}] * 2)  # type: ignore[arg-type]
    assert estimate_tokens(parts) == 160 // 4 + 4 + 256


def test_pending_work_comes_in_units_by_minute_of_deadline(
    db: Database, store: ObjectStore, registry: ModelRegistry
) -> None:
    submit(
        db,
        store,
        [
            (MODEL, "24h", T0),
            ("tiny-chat", "24h", T0 + 1),  # same engine, same minute: one unit
            (MODEL, "1h", T0),
            (MODEL, "1h", T0 + 2 * MINUTE),
        ],
    )
    (group,) = pending_groups(db, registry)
    assert group.engine_model == "tiny-chat"
    assert group.models == ("llama-3.1-8b-instruct-fp16", "tiny-chat")
    assert [(u.first_expires_at - T0, u.count) for u in group.units] == [
        (3600, 1),
        (3600 + 2 * MINUTE, 1),
        (86400, 2),
    ]
    each = estimate_tokens(chat_request("x" * 40))
    assert [u.tokens for u in group.units] == [each, each, 2 * each]


def test_open_job_claims_only_the_requests_due_in_its_range(
    db: Database, store: ObjectStore, registry: ModelRegistry
) -> None:
    soon, later = submit(db, store, [(MODEL, "1h", T0), (MODEL, "24h", T0)])
    (group,) = pending_groups(db, registry)
    job = open_job(
        db,
        store,
        group,
        max_requests=10,
        deployment="inference/local",
        at=T0,
        expires_between=(T0 + 86400, T0 + 86400),
    )
    assert job is not None and job.request_count == 1
    assert state.in_progress_ids(db, job.id, [soon, later]) == {later}


def group_of(*units: tuple[int, int]) -> PendingGroup:
    """Units of (hours until the deadline, requests), 10,000 tokens per request (five
    seconds of tiny-chat's estimated throughput)."""
    return PendingGroup(
        "tiny-chat",
        ("tiny-chat",),
        tuple(PendingUnit(T0 + h * 3600, T0 + h * 3600 + 30, n, 10_000 * n) for h, n in units),
    )


def tick(groups: list[PendingGroup], forecast: list[float], **fields: object) -> Tick:
    now = datetime.fromtimestamp(T0, UTC)
    return Tick(
        now,
        groups,
        [POOL],
        ModelRegistry.load(Settings().models_path),
        **{  # type: ignore[arg-type]
            "job_max_requests": 5000,
            "forecasts": {"GB": np.array(forecast)},
            **fields,
        },
    )


def test_carbon_waits_for_the_clean_hour_and_runs_what_is_due() -> None:
    # Dirty now, clean in five hours; half the work is due within the hour.
    forecast = [300.0] * 5 + [50.0] * 20
    decision = carbon(tick([group_of((1, 300), (24, 700))], forecast))
    assert decision.plan is not None
    (launch,) = decision.launches
    assert launch.max_requests == 300 and launch.pool == "local"
    assert launch.expires_between == (T0 + 3600, T0 + 3600 + 30)
    (later,) = decision.plan.later
    assert later.start - decision.plan.now == timedelta(hours=5)
    assert later.expected_gco2e is not None and later.baseline_gco2e is not None
    assert later.expected_gco2e < later.baseline_gco2e


def test_carbon_runs_now_when_now_is_cleanest_and_splits_big_jobs() -> None:
    forecast = [50.0] + [300.0] * 30
    decision = carbon(tick([group_of((24, 700))], forecast, job_max_requests=300))
    assert [launch.max_requests for launch in decision.launches] == [300, 300, 100]


def test_carbon_without_a_signal_still_runs_work_due_soon() -> None:
    decision = carbon(tick([group_of((1, 10))], []))
    assert [launch.max_requests for launch in decision.launches] == [10]


def test_carbon_opens_one_job_on_a_pool_that_runs_one() -> None:
    # 5,000 short requests (a few minutes of work), two jobs' worth of job_max_requests:
    # the planner cuts them into two jobs, and the pool runs one job at a time, so one
    # opens now, for the earliest due, and the other is planned for a later hour.
    one = Pool("local", "inference/local", "GB", max_concurrent_jobs=1, startup_seconds=30)
    units = tuple(PendingUnit(T0 + h * 3600, T0 + h * 3600 + 30, 2500, 250_000) for h in (20, 24))
    group = PendingGroup("tiny-chat", ("tiny-chat",), units)
    now = tick([group], [50.0] + [300.0] * 30, job_max_requests=2500)
    decision = carbon(replace(now, pools=[one]))
    assert decision.plan is not None and len(decision.plan.jobs) == 2
    assert [j.units for j in decision.plan.launch] == [(0,)]
    (launch,) = decision.launches
    assert launch.max_requests == 2500 and launch.pool == "local"
    assert launch.expires_between == (T0 + 20 * 3600, T0 + 20 * 3600 + 30)


def test_carbon_opens_nothing_on_a_full_pool() -> None:
    forecast = [50.0] + [300.0] * 30
    decision = carbon(tick([group_of((24, 700))], forecast, busy={"local": [4]}))
    assert decision.launches == []


def test_carbon_caps_the_launches_at_the_free_places_earliest_deadline_first() -> None:
    # Without a signal every planned job runs now: one per unit (a unit's 1,000 requests
    # are more than one job's 700 already), each two launches. Two of the four places
    # are busy, so two open, both for the earliest-due unit.
    groups = [group_of((10, 1000), (12, 1000), (14, 1000))]
    decision = carbon(tick(groups, [], job_max_requests=700, busy={"local": [2]}))
    assert decision.plan is not None and len(decision.plan.launch) == 2
    assert [launch.max_requests for launch in decision.launches] == [700, 300]
    due = {launch.expires_between for launch in decision.launches}
    assert due == {(T0 + 10 * 3600, T0 + 10 * 3600 + 30)}


def test_carbon_runs_late_jobs_only_in_places_left_free() -> None:
    # Due now, inside the safety margin: late; the pool is full, then has one place.
    decision = carbon(tick([group_of((0, 10))], [], busy={"local": [4]}))
    assert decision.plan is not None and len(decision.plan.late) == 1
    assert decision.launches == []
    decision = carbon(tick([group_of((0, 10))], [], busy={"local": [3]}))
    assert [launch.max_requests for launch in decision.launches] == [10]


def test_immediate_runs_everything_in_the_default_pool() -> None:
    decision = immediate(tick([group_of((1, 10), (24, 7))], [], job_max_requests=10))
    assert [(launch.max_requests, launch.pool) for launch in decision.launches] == [
        (10, "local"),
        (10, "local"),
    ]
    assert decision.plan is None


def test_plan_report_shows_each_pool_its_forecast_window_and_saving() -> None:
    forecast = [300.0] * 5 + [50.0] * 20
    groups = [group_of((1, 300), (24, 700))]
    decision = carbon(tick(groups, forecast))
    text = plan_markdown(
        decision.plan, groups, [POOL], {"GB": np.array(forecast)}, {"GB": "replay"}
    )
    assert "## Pool `local` (zone GB, inference/local)" in text
    assert sparkline(np.array(forecast[:25])) in text
    assert "| tiny-chat | 300 | now |" in text
    assert "| tiny-chat | 700 | " in text and "Expected saving in this pool: " in text
    assert "min 50 gCO2e/kWh at +5 h" in text


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline(np.array([0.0, 50.0, 100.0])) == "▁▅█"
    assert sparkline(np.array([7.0, 7.0])) == "▁▁"
