"""Jobs in the state database: claiming requests, launches, results, failures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    String,
    any_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)

from offpeak.errors import NotFound
from offpeak.events import outbox
from offpeak.schemas import ACTIVE_JOB_STATUSES, CarbonObject, ErrorCode, JobStatus, Status
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Batch, Job, Request

ID_CHUNK = 5000


# Requests of a dataset still being registered wait until all of its rows are in.
_in_validating_batch = (
    select(Batch.id)
    .where(Batch.id == Request.batch_id, Batch.status == Status.VALIDATING.value)
    .exists()
)


@dataclass(frozen=True)
class PendingRow:
    """Sealed, registered requests of one model whose deadlines fall in one minute."""

    model: str
    first_expires_at: int
    last_expires_at: int
    count: int
    est_tokens: int  # summed over those with an estimate
    unestimated: int  # how many have none


def pending_work(db: Database) -> list[PendingRow]:
    """Requests waiting to be scheduled, per model and minute of deadline (in no
    particular order)."""
    minute = Request.expires_at - Request.expires_at % 60
    with db.session() as session:
        if db.dialect == "postgresql":
            # The aggregate holds one entry per model and minute (some 70,000 for a day
            # of deadlines over 50 models): PostgreSQL's default work_mem (4 MB) spills
            # it to disk, and compiling it (JIT) costs more than it saves. For this
            # transaction only.
            session.execute(text("SET LOCAL work_mem = '64MB'"))
            session.execute(text("SET LOCAL jit = off"))
        # Plain rows (Core): the ORM's row handling doubles the time of 70,000 rows.
        rows = session.connection().execute(
            select(
                Request.model,
                func.min(Request.expires_at),
                func.max(Request.expires_at),
                func.count(),
                func.coalesce(func.sum(Request.est_tokens), 0),
                func.count(Request.est_tokens),
            )
            .where(
                Request.status == Status.REGISTERED.value,
                Request.segment.is_not(None),
                ~_in_validating_batch,
            )
            .group_by(Request.model, minute)
        )
        return [
            PendingRow(model, first, last, count, int(tokens), count - estimated)
            for model, first, last, count, tokens, estimated in rows
        ]


def pending_requests(
    db: Database,
    models: Sequence[str],
    limit: int,
    expires_between: tuple[int, int] | None = None,
) -> list[tuple[str, str]]:
    """(id, segment) of sealed, registered requests for ``models``: the oldest, or with
    ``expires_between`` (inclusive) those due in that range, earliest first."""
    query = select(Request.id, Request.segment).where(
        Request.status == Status.REGISTERED.value,
        Request.segment.is_not(None),
        Request.model.in_(models),
        ~_in_validating_batch,
    )
    if expires_between is None:
        query = query.order_by(Request.id)
    else:
        first, last = expires_between
        query = query.where(Request.expires_at.between(first, last)).order_by(
            Request.expires_at, Request.id
        )
    with db.session() as session:
        rows = session.execute(query.limit(limit))
        return [(rid, str(segment)) for rid, segment in rows]


def _among(db: Database, ids: Sequence[str]) -> list[ColumnElement[bool]]:
    """``Request.id`` in ``ids``, as conditions to run one after the other: on PostgreSQL
    one, on an array parameter (`= ANY`), since a parameter per id costs the client more
    to build and send than the update it serves; elsewhere one per `ID_CHUNK` ids
    (SQLite's cap on parameters)."""
    if db.dialect == "postgresql":
        return [Request.id == any_(bindparam("ids", list(ids), type_=ARRAY(String)))]
    return [Request.id.in_(ids[start : start + ID_CHUNK]) for start in range(0, len(ids), ID_CHUNK)]


def create_job(db: Database, job: Job, request_ids: Sequence[str], at: int) -> int:
    """Insert ``job`` and move its requests to `in_progress`, atomically.

    Compare-and-set: a request cancelled meanwhile stays cancelled and is not part of
    the job. Returns how many requests the job holds; with none, no job is stored.
    """
    with db.session(write=True) as session:
        session.add(job)
        session.flush()
        moved = 0
        for among in _among(db, request_ids):
            result = session.execute(
                update(Request)
                .where(among, Request.status == Status.REGISTERED.value)
                .values(status=Status.IN_PROGRESS.value, job_id=job.id, in_progress_at=at)
            )
            moved += result.rowcount  # type: ignore[attr-defined]
        if moved == 0:
            session.delete(job)
            return 0
        job.request_count = moved
        batch_ids = select(Request.batch_id).where(Request.job_id == job.id).distinct()
        session.execute(
            update(Batch)
            .where(Batch.id.in_(batch_ids), Batch.status == Status.REGISTERED.value)
            .values(status=Status.IN_PROGRESS.value, in_progress_at=at)
        )
    return moved


def get_job(db: Database, job_id: str) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", code="job_not_found")
    return job


def active_jobs(db: Database) -> list[Job]:
    """Jobs created, launched or running: the scheduler watches these."""
    with db.session() as session:
        return list(
            session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES)).order_by(Job.id))
        )


def update_job(db: Database, job_id: str, **values: Any) -> None:
    with db.session(write=True) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def claim_job(db: Database, job_id: str, owner: str, at: int, lease: int, runner: str) -> bool:
    """Take an active job for the run ``owner`` until ``at + lease``: only when no other
    run's lease is live (compare-and-set), so a job is run by one run at a time. The
    job becomes `running`. False when another run holds it, or it has ended."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status.in_(ACTIVE_JOB_STATUSES),
                or_(
                    Job.lease_owner.is_(None),
                    Job.lease_owner == owner,
                    Job.lease_expires_at < at,
                ),
            )
            .values(
                status=JobStatus.RUNNING,
                lease_owner=owner,
                lease_expires_at=at + lease,
                started_at=at,
                runner=runner,
            )
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew_lease(db: Database, job_id: str, owner: str, until: int) -> bool:
    """Extend ``owner``'s lease of an active job; False when it is no longer ``owner``'s
    (another run took the job over) or the job ended."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.lease_owner == owner,
                Job.status.in_(ACTIVE_JOB_STATUSES),
            )
            .values(lease_expires_at=until)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete_job(db: Database, job_id: str, owner: str) -> bool:
    """Mark the job completed and release its lease, if ``owner`` still holds it."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(status=JobStatus.COMPLETED, lease_expires_at=None)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def holds_lease(db: Database, job_id: str, owner: str) -> bool:
    """Whether ``owner`` still holds the job."""
    with db.session() as session:
        return session.scalar(select(Job.lease_owner).where(Job.id == job_id)) == owner


def release_lease(db: Database, job_id: str, owner: str) -> None:
    """Give up ``owner``'s lease (its run ends short), so the next run need not wait."""
    with db.session(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def in_progress_ids(db: Database, job_id: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` still wait on this job (cancelled ones drop out)."""
    found: set[str] = set()
    with db.session() as session:
        for start in range(0, len(ids), ID_CHUNK):
            found.update(
                session.scalars(
                    select(Request.id).where(
                        Request.id.in_(ids[start : start + ID_CHUNK]),
                        Request.job_id == job_id,
                        Request.status == Status.IN_PROGRESS.value,
                    )
                )
            )
    return found


@dataclass(frozen=True)
class Outcome:
    """The final state of one request, as written in a chunk's result file."""

    id: str
    status: Status
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    error_code: str | None
    error_message: str | None


def apply_outcomes(
    db: Database, job_id: str, result_key: str, outcomes: Sequence[Outcome], at: int
) -> int:
    """Record outcomes and debit their cost, once: only requests still in progress on
    this job change (a cancelled request keeps its status and is not charged), and
    applying the same chunk twice changes nothing. Returns how many changed.
    """
    by_id = {o.id: o for o in outcomes}
    ids = list(by_id)
    with db.session(write=True) as session:
        owners: dict[str, str] = {}
        for start in range(0, len(ids), ID_CHUNK):
            query = select(Request.id, Request.key_id).where(
                Request.id.in_(ids[start : start + ID_CHUNK]),
                Request.job_id == job_id,
                Request.status == Status.IN_PROGRESS.value,
            )
            if db.dialect == "postgresql":
                query = query.with_for_update()
            owners.update({rid: key_id for rid, key_id in session.execute(query)})
        if not owners:
            return 0
        session.execute(
            update(Request),
            [
                {
                    "id": rid,
                    "status": by_id[rid].status.value,
                    "ended_at": at,
                    "result_key": result_key,
                    "prompt_tokens": by_id[rid].prompt_tokens,
                    "completion_tokens": by_id[rid].completion_tokens,
                    "cost_usd": by_id[rid].cost_usd,
                    "error_code": by_id[rid].error_code,
                    "error_message": by_id[rid].error_message,
                }
                for rid in owners
            ],
        )
        debits: dict[str, Decimal] = defaultdict(Decimal)
        for rid, key_id in owners.items():
            debits[key_id] += by_id[rid].cost_usd
        for key_id, amount in debits.items():
            if amount:
                session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .values(credits_usd=ApiKey.credits_usd - amount)
                )
        outbox.add_request_events(session, list(owners), at)
    return len(owners)


def fail_job(db: Database, job_id: str, code: str, message: str, at: int) -> int:
    """Fail a job and every request still waiting on it; returns how many failed."""
    waiting = (Request.job_id == job_id, Request.status == Status.IN_PROGRESS.value)
    with db.session(write=True) as session:
        watched = outbox.watched_requests(session, *waiting)
        result = session.execute(
            update(Request)
            .where(*waiting)
            .values(status=Status.FAILED.value, error_code=code, error_message=message, ended_at=at)
        )
        outbox.add_request_events(session, watched, at)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.FAILED, error=message, ended_at=at)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


def expire_overdue(db: Database, at: int) -> int:
    """Fail requests still waiting past their deadline (code `expired`, not charged)."""
    overdue = (Request.status == Status.REGISTERED.value, Request.expires_at < at)
    with db.session(write=True) as session:
        watched = outbox.watched_requests(session, *overdue)
        result = session.execute(
            update(Request)
            .where(*overdue)
            .values(
                status=Status.FAILED.value,
                error_code=ErrorCode.EXPIRED,
                error_message="the request could not run before its completion window ended",
                ended_at=at,
            )
        )
        outbox.add_request_events(session, watched, at)
    return int(result.rowcount)  # type: ignore[attr-defined]


def job_requests_for_carbon(db: Database, job_id: str) -> list[tuple[str, int, int]]:
    """(id, created_at, tokens) of the requests this job completed."""
    with db.session() as session:
        rows = session.execute(
            select(
                Request.id,
                Request.created_at,
                func.coalesce(Request.prompt_tokens, 0)
                + func.coalesce(Request.completion_tokens, 0),
            ).where(Request.job_id == job_id, Request.status == Status.COMPLETED.value)
        )
        return [(rid, created, int(tokens)) for rid, created, tokens in rows]


def record_carbon(
    db: Database,
    job_id: str,
    *,
    pool: str,
    zone: str,
    energy_kwh: float,
    intensity: float,
    gco2e: float,
    ran_at: int,
    requests: Sequence[tuple[str, float, float]],
) -> None:
    """Store a job's footprint and each request's share (id, gco2e, baseline_gco2e)."""
    with db.session(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(pool=pool, zone=zone, energy_kwh=energy_kwh, intensity=intensity, gco2e=gco2e)
        )
        if requests:
            session.execute(
                update(Request),
                [
                    {
                        "id": rid,
                        "gco2e": g,
                        "baseline_gco2e": b,
                        "carbon_zone": zone,
                        "ran_at": ran_at,
                        "carbon": CarbonObject.of(g, b, zone, ran_at).model_dump_json(),
                    }
                    for rid, g, b in requests
                ],
            )
