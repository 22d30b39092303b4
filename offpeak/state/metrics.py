"""The state behind the operator's metrics: a handful of SQL aggregates over the state DB.

Any API replica can answer them (the numbers live in the database, not in a process),
and short-lived flow runs need no push gateway: what a run records in its job row is
exported from there. The Prometheus objects that carry these figures live in
``api_adapter.metrics``; this module only reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, select

from offpeak.schemas.status import JobStatus, Status
from offpeak.state.db import Database
from offpeak.state.models import Batch, Job, Request, WebhookAttempt, WebhookEvent

# A request waits for the scheduler while registered; the planner skips rows not yet
# sealed, but an operator counts them as waiting all the same.
PENDING = Status.REGISTERED.value
NO_POOL = ""  # the `pool` label of jobs not yet placed
PENDING_EVENT = "pending"  # a webhook event still to deliver (first try or a retry)


@dataclass(frozen=True)
class JobTotals:
    """Completed jobs of one model on one pool, summed."""

    jobs: int
    completion_tokens: int
    wall_seconds: float
    energy_kwh: float
    startup_seconds: float = 0.0  # the engine's start-up, summed


@dataclass(frozen=True)
class StateMetrics:
    """One reading of the state DB: counts by status, pending work, money and carbon."""

    requests: dict[tuple[str, str], int]  # (status, model) -> requests
    pending_tokens: dict[str, int]  # model -> estimated tokens of pending requests
    oldest_pending_created_at: int | None  # unix seconds; None when nothing waits
    earliest_pending_deadline: int | None  # the least expires_at among pending requests
    jobs: dict[tuple[str, str], int]  # (status, pool) -> jobs
    batches: dict[str, int]  # status -> batches
    credits_spent_usd: float
    carbon_emitted_grams: float
    carbon_saved_grams: float  # baseline minus emitted, over requests that ran
    job_totals: dict[tuple[str, str], JobTotals] = field(default_factory=dict)
    webhook_attempts: dict[str, int] = field(default_factory=dict)  # outcome -> attempts
    webhook_events_pending: int = 0  # events not yet delivered nor given up on


def read_state_metrics(db: Database) -> StateMetrics:
    """Read every figure in one short transaction (a consistent snapshot on PostgreSQL)."""
    pending = Request.status == PENDING
    ran = and_(Request.gco2e.is_not(None), Request.baseline_gco2e.is_not(None))
    pool = func.coalesce(Job.pool, NO_POOL)
    done = Job.status == JobStatus.COMPLETED.value
    with db.session() as session:
        requests = {
            (status, model): count
            for status, model, count in session.execute(
                select(Request.status, Request.model, func.count()).group_by(
                    Request.status, Request.model
                )
            )
        }
        pending_tokens = {
            model: int(tokens)
            for model, tokens in session.execute(
                select(Request.model, func.coalesce(func.sum(Request.est_tokens), 0))
                .where(pending)
                .group_by(Request.model)
            )
        }
        oldest, earliest = session.execute(
            select(func.min(Request.created_at), func.min(Request.expires_at)).where(pending)
        ).one()
        jobs = {
            (status, p): count
            for status, p, count in session.execute(
                select(Job.status, pool, func.count()).group_by(Job.status, pool)
            )
        }
        batches = {
            status: count
            for status, count in session.execute(
                select(Batch.status, func.count()).group_by(Batch.status)
            )
        }
        spent, emitted, saved = session.execute(
            select(
                func.coalesce(func.sum(Request.cost_usd), 0),
                func.coalesce(func.sum(Request.gco2e), 0.0),
                func.coalesce(
                    func.sum(case((ran, Request.baseline_gco2e - Request.gco2e), else_=0.0)),
                    0.0,
                ),
            )
        ).one()
        totals = {
            (model, p): JobTotals(int(n), int(tokens), float(wall), float(energy), float(startup))
            for model, p, n, tokens, wall, energy, startup in session.execute(
                select(
                    Job.model,
                    pool,
                    func.count(),
                    func.coalesce(func.sum(Job.completion_tokens), 0),
                    func.coalesce(func.sum(Job.wall_seconds), 0.0),
                    func.coalesce(func.sum(Job.energy_kwh), 0.0),
                    func.coalesce(func.sum(Job.startup_seconds), 0.0),
                )
                .where(done)
                .group_by(Job.model, pool)
            )
        }
        attempts = {
            outcome: count
            for outcome, count in session.execute(
                select(WebhookAttempt.outcome, func.count()).group_by(WebhookAttempt.outcome)
            )
        }
        events_pending = session.execute(
            select(func.count()).where(WebhookEvent.status == PENDING_EVENT)
        ).scalar_one()
    return StateMetrics(
        requests=requests,
        pending_tokens=pending_tokens,
        oldest_pending_created_at=oldest,
        earliest_pending_deadline=earliest,
        jobs=jobs,
        batches=batches,
        credits_spent_usd=float(spent),
        carbon_emitted_grams=float(emitted),
        carbon_saved_grams=float(saved),
        job_totals=totals,
        webhook_attempts=attempts,
        webhook_events_pending=int(events_pending),
    )
