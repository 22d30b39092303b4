"""The state metrics' SQL aggregates, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.metrics import NO_POOL, JobTotals, read_state_metrics
from offpeak.state.models import Batch, Job, Request, WebhookAttempt, WebhookEvent
from tests.utils.factories import MODEL, add_requests, new_key, set_status


def _job(job_id: str, status: str, pool: str | None, **fields: object) -> Job:
    return Job(
        id=job_id,
        model=MODEL,
        deployment="inference",
        status=status,
        pool=pool,
        manifest_key=f"jobs/{job_id}.json",
        request_count=1,
        created_at=1,
        **fields,
    )


def test_an_empty_database_reads_as_zeros(db: Database) -> None:
    state = read_state_metrics(db)
    assert state.requests == {} and state.jobs == {} and state.batches == {}
    assert state.webhook_attempts == {} and state.webhook_events_pending == 0
    assert state.oldest_pending_created_at is None and state.earliest_pending_deadline is None
    assert (state.credits_spent_usd, state.carbon_emitted_grams, state.carbon_saved_grams) == (
        0.0,
        0.0,
        0.0,
    )


def test_requests_count_by_status_and_model_and_pending_work_is_summed(db: Database) -> None:
    key, _ = new_key(db)
    waiting = add_requests(db, key.id, 3, at=1_000)
    later = add_requests(db, key.id, 1, at=2_000, completion_window="1h")
    done = add_requests(db, key.id, 2, at=500)
    set_status(db, done, Status.COMPLETED)
    with db.session() as session:
        session.execute(update(Request).where(Request.id.in_(waiting)).values(est_tokens=100))
        session.execute(update(Request).where(Request.id.in_(later)).values(est_tokens=None))
        session.execute(
            update(Request)
            .where(Request.id.in_(done))
            .values(cost_usd=Decimal("0.25"), gco2e=1.5, baseline_gco2e=4.0)
        )

    state = read_state_metrics(db)

    assert state.requests == {("registered", MODEL): 4, ("completed", MODEL): 2}
    assert state.pending_tokens == {MODEL: 300}  # an unestimated request adds nothing
    assert state.oldest_pending_created_at == 1_000
    assert state.earliest_pending_deadline == min(2_000 + 3_600, 1_000 + 24 * 3_600)
    assert state.credits_spent_usd == pytest.approx(0.5)
    assert state.carbon_emitted_grams == pytest.approx(3.0)
    assert state.carbon_saved_grams == pytest.approx(5.0)


def test_a_request_without_a_baseline_saves_nothing(db: Database) -> None:
    key, _ = new_key(db)
    ran = add_requests(db, key.id, 1)
    with db.session() as session:
        session.execute(update(Request).where(Request.id.in_(ran)).values(gco2e=2.0))
    state = read_state_metrics(db)
    assert (state.carbon_emitted_grams, state.carbon_saved_grams) == (2.0, 0.0)


def test_jobs_count_by_status_and_pool_and_completed_ones_are_summed(db: Database) -> None:
    with db.session() as session:
        session.add_all(
            [
                _job("job_a", "created", None),
                _job("job_b", "running", "eu"),
                _job("job_c", "completed", "eu", completion_tokens=100, wall_seconds=4.0,
                     energy_kwh=0.5, startup_seconds=2.5),
                _job("job_d", "completed", "eu", completion_tokens=50, wall_seconds=1.0),
                _job("job_e", "failed", "eu", completion_tokens=7, wall_seconds=9.0),
            ]
        )  # fmt: skip

    state = read_state_metrics(db)

    assert state.jobs == {
        ("created", NO_POOL): 1,
        ("running", "eu"): 1,
        ("completed", "eu"): 2,
        ("failed", "eu"): 1,
    }
    assert state.job_totals == {(MODEL, "eu"): JobTotals(2, 150, 5.0, 0.5, 2.5)}


def test_batches_count_by_status(db: Database) -> None:
    key, _ = new_key(db)
    with db.session() as session:
        for i, status in enumerate(["in_progress", "completed", "completed"]):
            session.add(
                Batch(id=f"batch_{i}", key_id=key.id, status=status, meta={}, created_at=1,
                      expires_at=2)
            )  # fmt: skip
    assert read_state_metrics(db).batches == {"in_progress": 1, "completed": 2}


def test_webhook_attempts_count_by_outcome_and_pending_events_are_counted(db: Database) -> None:
    key, _ = new_key(db)
    with db.session() as session:
        for i, status in enumerate(["pending", "pending", "delivered", "failed"]):
            session.add(
                WebhookEvent(id=f"evt_{i}", key_id=key.id, type="request.completed",
                             object_id=f"req_{i}", target="http://127.0.0.1:9/hook",
                             payload="{}", status=status, attempts=1, created_at=1)
            )  # fmt: skip
        session.flush()
        for i, outcome in enumerate(["retry", "delivered", "failed", "retry"]):
            session.add(
                WebhookAttempt(id=f"wha_{i}", event_id=f"evt_{i}", key_id=key.id,
                               attempted_at=2, status_code=500, duration_ms=3, outcome=outcome)
            )  # fmt: skip

    state = read_state_metrics(db)

    assert state.webhook_attempts == {"retry": 2, "delivered": 1, "failed": 1}
    assert state.webhook_events_pending == 2
