"""Batches in the state database, for both dialects: create (atomically claiming
requests), read and list, count their requests, cancel, and finish once published.

A batch made through the OpenAI API is one of these with its `openai` view loaded
(`Batch.openai`); it is counted, listed, cancelled and finished like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import ColumnElement, case, func, select, update

from offpeak.errors import Conflict, NotFound
from offpeak.events import outbox
from offpeak.ids import new_id
from offpeak.schemas import (
    FINAL_STATUSES,
    BatchCreate,
    CarbonObject,
    ErrorCode,
    RequestCounts,
    Status,
)
from offpeak.state.db import Database
from offpeak.state.jobs import ACTIVE_JOB_STATUSES
from offpeak.state.models import Batch, Job, OpenAIView, Request
from offpeak.state.requests import CANCELLABLE

# Stay well under the bound-parameter limits of SQLite and PostgreSQL.
ID_CHUNK = 5000
SHOWN_IDS = 10


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i : i + ID_CHUNK] for i in range(0, len(ids), ID_CHUNK)]


def _name(ids: list[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(sorted(ids)[:SHOWN_IDS]) + more


def create_batch(db: Database, key_id: str, create: BatchCreate, at: int) -> Batch:
    """Create a batch of the caller's requests, all or nothing.

    Unknown or foreign ids raise :class:`NotFound` naming them; requests already in
    a batch raise :class:`Conflict`. The batch expires with its latest request.
    """
    ids = create.requests_ids
    batch_id = new_id()
    with db.session(write=True) as session:
        found: dict[str, tuple[str | None, int]] = {}
        started = False
        for chunk in _chunks(ids):
            rows = session.execute(
                select(Request.id, Request.batch_id, Request.expires_at, Request.status).where(
                    Request.id.in_(chunk), Request.key_id == key_id
                )
            )
            for rid, bid, exp, status in rows:
                found[rid] = (bid, exp)
                started = started or status != Status.REGISTERED

        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"requests not found: {_name(missing)}", code="request_not_found")
        taken = [i for i, (bid, _) in found.items() if bid is not None]
        if taken:
            raise Conflict(
                f"requests already in a batch: {_name(taken)}", code="request_already_in_batch"
            )
        # A batch of requests already being processed (or done) is in progress at once.
        batch = Batch(
            id=batch_id,
            key_id=key_id,
            status=(Status.IN_PROGRESS if started else Status.REGISTERED).value,
            in_progress_at=at if started else None,
            meta=create.metadata or {},
            webhook=str(create.webhook) if create.webhook else None,
            created_at=at,
            expires_at=max(exp for _, exp in found.values()),
            openai=None,
        )
        session.add(batch)
        session.flush()
        claimed = 0
        for chunk in _chunks(ids):
            result = session.execute(
                update(Request)
                .where(Request.id.in_(chunk), Request.key_id == key_id, Request.batch_id.is_(None))
                .values(batch_id=batch_id)
            )
            claimed += result.rowcount  # type: ignore[attr-defined]
        if claimed != len(ids):
            # Another batch claimed some of them between our read and our update.
            raise Conflict(
                "requests were added to another batch meanwhile; retry",
                code="request_already_in_batch",
            )
    return batch


def get_batch(db: Database, key_id: str, batch_id: str, *, openai: bool = False) -> Batch:
    """The caller's batch, or :class:`NotFound` (also for another key's batch, and with
    ``openai`` for a batch that has no OpenAI view)."""
    query = select(Batch).where(Batch.id == batch_id, Batch.key_id == key_id)
    if openai:
        query = query.where(Batch.openai.has())
    with db.session() as session:
        batch = session.scalar(query)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", code="batch_not_found")
    return batch


def find_batch(db: Database, key_id: str, batch_id: str) -> Batch | None:
    try:
        return get_batch(db, key_id, batch_id)
    except NotFound:
        return None


def list_batches(
    db: Database,
    key_id: str,
    *,
    after: str | None = None,
    limit: int = 1000,
    order: Literal["asc", "desc"] = "asc",
    openai: bool = False,
) -> list[Batch]:
    """One page of the caller's batches in creation order (ids are time-ordered), past
    ``after`` in that order; with ``openai``, only those with an OpenAI view."""
    query = select(Batch).where(Batch.key_id == key_id)
    if openai:
        query = query.where(Batch.openai.has())
    if after:
        query = query.where(Batch.id > after if order == "asc" else Batch.id < after)
    query = query.order_by(Batch.id if order == "asc" else Batch.id.desc())
    with db.session() as session:
        return list(session.scalars(query.limit(limit)))


@dataclass
class Tally:
    """A batch's requests counted once for both dialects: how many are in each status,
    how many of the failed ones expired unrun, their tokens, and when the last ended."""

    counts: RequestCounts = field(default_factory=RequestCounts)
    expired: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_ended_at: int | None = None

    @property
    def pending(self) -> int:
        """Requests not ended yet."""
        c = self.counts
        return c.total - c.completed - c.failed - c.cancelled


def tallies(db: Database, batch_ids: Sequence[str]) -> dict[str, Tally]:
    """The tally of each batch, in one grouped query per id chunk."""
    found = {bid: Tally() for bid in batch_ids}
    expired = case((Request.error_code == ErrorCode.EXPIRED.value, 1), else_=0)
    with db.session() as session:
        for chunk in _chunks(list(batch_ids)):
            rows = session.execute(
                select(
                    Request.batch_id,
                    Request.status,
                    func.count(),
                    func.sum(expired),
                    func.sum(func.coalesce(Request.prompt_tokens, 0)),
                    func.sum(func.coalesce(Request.completion_tokens, 0)),
                    func.max(Request.ended_at),
                )
                .where(Request.batch_id.in_(chunk))
                .group_by(Request.batch_id, Request.status)
            )
            for bid, status, n, n_expired, prompt, completion, ended in rows:
                tally = found[str(bid)]
                setattr(tally.counts, status, n)
                tally.counts.total += n
                tally.expired += int(n_expired or 0)
                tally.prompt_tokens += int(prompt or 0)
                tally.completion_tokens += int(completion or 0)
                if ended is not None:
                    tally.last_ended_at = max(tally.last_ended_at or 0, int(ended))
    return found


def request_counts(db: Database, batch_ids: Sequence[str]) -> dict[str, RequestCounts]:
    """Requests per status for each batch (their tallies' counts)."""
    return {bid: tally.counts for bid, tally in tallies(db, batch_ids).items()}


def batch_carbon(db: Database, batch_ids: Sequence[str]) -> dict[str, CarbonObject]:
    """The summed footprint of each batch's accounted requests (batches with none are
    left out)."""
    carbon: dict[str, CarbonObject] = {}
    with db.session() as session:
        for chunk in _chunks(list(batch_ids)):
            rows = session.execute(
                select(
                    Request.batch_id,
                    Request.carbon_zone,
                    func.sum(Request.gco2e),
                    func.sum(Request.baseline_gco2e),
                    func.min(Request.ran_at),
                )
                .where(Request.batch_id.in_(chunk), Request.gco2e.is_not(None))
                .group_by(Request.batch_id, Request.carbon_zone)
            )
            sums: dict[str, list[tuple[str, float, float, int]]] = {}
            for bid, zone, gco2e, baseline, ran_at in rows:
                sums.setdefault(str(bid), []).append((zone, gco2e, baseline or 0.0, ran_at))
            for bid, parts in sums.items():
                carbon[bid] = CarbonObject.of(
                    sum(p[1] for p in parts),
                    sum(p[2] for p in parts),
                    ",".join(sorted({p[0] for p in parts if p[0]})),
                    min(p[3] for p in parts),
                )
    return carbon


def cancel_batch(db: Database, key_id: str, batch_id: str, at: int) -> Batch:
    """Cancel a batch and every request of it not yet final, in one transaction."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Batch)
            .where(
                Batch.id == batch_id,
                Batch.key_id == key_id,
                Batch.status.in_([s.value for s in CANCELLABLE]),
            )
            .values(status=Status.CANCELLED.value, ended_at=at)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            open_requests = (
                Request.batch_id == batch_id,
                Request.status.in_([s.value for s in CANCELLABLE]),
            )
            watched = outbox.watched_requests(session, *open_requests)
            session.execute(
                update(Request)
                .where(*open_requests)
                .values(status=Status.CANCELLED.value, ended_at=at)
            )
            outbox.add_request_events(session, watched, at)
            outbox.add_batch_event(session, batch_id, at)
            # Its OpenAI view, if any, shows `cancelling` until its files are written.
            session.execute(
                update(OpenAIView)
                .where(OpenAIView.id == batch_id, OpenAIView.cancelling_at.is_(None))
                .values(cancelling_at=at)
            )
            cancelled = True
        else:
            cancelled = False
    batch = get_batch(db, key_id, batch_id)
    if not cancelled:
        raise Conflict(
            f"batch {batch_id} is already {batch.status} and cannot be cancelled",
            code="batch_not_cancellable",
        )
    return batch


def _settled() -> ColumnElement[bool]:
    """No request of the batch is waiting, nor in a job still running (a job ends after
    its carbon is accounted): what it publishes can no longer change."""
    waiting = (
        select(Request.id)
        .where(
            Request.batch_id == Batch.id,
            Request.status.in_([s.value for s in CANCELLABLE]),
        )
        .exists()
    )
    # The batches of the jobs still running, read once (the requests of a few jobs): as
    # a test per batch, PostgreSQL may join each batch's every request to its job,
    # seconds per tick with a million requests pending.
    running = (
        select(Request.batch_id)
        .join(Job, Job.id == Request.job_id)
        .where(Job.status.in_(ACTIVE_JOB_STATUSES))
        .cte("running_batches")
        .prefix_with("MATERIALIZED")
    )
    in_running_job = select(running.c.batch_id).where(running.c.batch_id == Batch.id).exists()
    return ~waiting & ~in_running_job


def unsettled(db: Database, batch_ids: Sequence[str]) -> set[str]:
    """Which of these batches still have a request waiting, or in a job still running."""
    found: set[str] = set()
    with db.session() as session:
        for chunk in _chunks(list(batch_ids)):
            query = select(Batch.id).where(Batch.id.in_(chunk), ~_settled())
            found |= {str(bid) for bid in session.scalars(query)}
    return found


def ready_to_publish(db: Database) -> list[Batch]:
    """Open batches whose requests have all ended, their jobs too."""
    query = select(Batch).where(Batch.status.in_([s.value for s in CANCELLABLE]), _settled())
    with db.session() as session:
        return list(session.scalars(query.order_by(Batch.id)))


def openai_files_due(db: Database, batch_ids: Sequence[str] | None = None) -> list[Batch]:
    """Batches with an OpenAI view but no output files yet that have ended (published,
    or cancelled) and settled; only among ``batch_ids`` when given."""
    query = select(Batch).where(
        Batch.openai.has(OpenAIView.ended_at.is_(None)),
        Batch.status.in_([s.value for s in FINAL_STATUSES]),
        _settled(),
    )
    if batch_ids is not None:
        query = query.where(Batch.id.in_(batch_ids))
    with db.session() as session:
        return list(session.scalars(query.order_by(Batch.id)))


def finish_batch(db: Database, batch_id: str, status: Status, results_key: str, at: int) -> bool:
    """Mark an open batch ended with its results file (compare-and-set on its status)."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status.in_([s.value for s in CANCELLABLE]))
            .values(status=status.value, results_key=results_key, ended_at=at)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            outbox.add_batch_event(session, batch_id, at)
    return bool(result.rowcount)  # type: ignore[attr-defined]


PUBLISH_ERROR = "offpeak_publish_error"  # the metadata key a failed publish is told in


def fail_publish(db: Database, batch_id: str, code: str, message: str, at: int) -> bool:
    """Mark an open batch `failed` because its results cannot be published, the reason
    kept in its metadata under PUBLISH_ERROR (the batch object shows it; no results
    file). Compare-and-set on its status, as finish_batch."""
    with db.session(write=True) as session:
        meta = session.scalar(select(Batch.meta).where(Batch.id == batch_id))
        reason = {PUBLISH_ERROR: {"code": code, "message": message}}
        result = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status.in_([s.value for s in CANCELLABLE]))
            .values(status=Status.FAILED.value, meta={**(meta or {}), **reason}, ended_at=at)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            outbox.add_batch_event(session, batch_id, at)
    return bool(result.rowcount)  # type: ignore[attr-defined]
