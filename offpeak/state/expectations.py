"""Expected start and completion times of waiting work, as the scheduler's latest plan
has them (offpeak.plan.expected): written at each tick, read by the API for its batch and
request objects.

A tick rewrites the units it planned and keeps the others until their deadline passes:
a unit launched at an earlier tick keeps that tick's times while its requests run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, func, insert, select

from offpeak.plan.expected import Expected, minute_of
from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.models import PlannedTime, Request

ID_CHUNK = 5000
WAITING = (Status.REGISTERED.value, Status.IN_PROGRESS.value)


@dataclass(frozen=True)
class Times:
    """What an object shows: null where not planned."""

    start_at: int | None = None
    completion_at: int | None = None

    @property
    def pair(self) -> tuple[int | None, int | None]:
        return (self.start_at, self.completion_at)


NOT_PLANNED = Times()


def record(db: Database, expected: Sequence[Expected], at: int) -> int:
    """Store a tick's expected times, in one transaction; units whose deadline minute has
    passed are dropped (their requests have ended or expired)."""
    with db.session(write=True) as session:
        session.execute(delete(PlannedTime).where(PlannedTime.expires_minute + 60 < at))
        if expected:
            keys = [{"m": e.model, "x": e.expires_minute} for e in expected]
            session.connection().execute(
                delete(PlannedTime).where(
                    PlannedTime.model == bindparam("m"),
                    PlannedTime.expires_minute == bindparam("x"),
                ),
                keys,
            )
            session.execute(
                insert(PlannedTime),
                [
                    {
                        "model": e.model,
                        "expires_minute": e.expires_minute,
                        "expected_start_at": e.start_at,
                        "expected_completion_at": e.completion_at,
                        "planned_at": at,
                    }
                    for e in expected
                ],
            )
    return len(expected)


def for_request(db: Database, row: Request) -> Times:
    """A request's expected times: those of its unit while it waits or runs."""
    if row.status not in WAITING:
        return NOT_PLANNED
    with db.session() as session:
        found = session.execute(
            select(PlannedTime.expected_start_at, PlannedTime.expected_completion_at).where(
                PlannedTime.model == row.model,
                PlannedTime.expires_minute == minute_of(row.expires_at),
            )
        ).first()
    if found is None:
        return NOT_PLANNED
    start, completion = found
    # A request already running started when it did, whatever the plan says now.
    return Times(row.in_progress_at or start, completion)


def for_batches(db: Database, batch_ids: Sequence[str]) -> dict[str, Times]:
    """Each batch's expected times over its requests still waiting or running: the
    earliest start and the latest completion of their units; the completion is null while
    one of them is not planned (not sealed yet, or its end unknown). Batches with none
    planned are left out."""
    planned = and_(
        PlannedTime.model == Request.model,
        PlannedTime.expires_minute == Request.expires_at - Request.expires_at % 60,
    )
    found: dict[str, Times] = {}
    with db.session() as session:
        for start in range(0, len(batch_ids), ID_CHUNK):
            rows = session.execute(
                select(
                    Request.batch_id,
                    func.min(PlannedTime.expected_start_at),
                    func.max(PlannedTime.expected_completion_at),
                    func.count(),
                    func.count(PlannedTime.expected_completion_at),
                )
                .select_from(Request)
                .outerjoin(PlannedTime, planned)
                .where(
                    Request.batch_id.in_(batch_ids[start : start + ID_CHUNK]),
                    Request.status.in_(WAITING),
                )
                .group_by(Request.batch_id)
            )
            for batch_id, first, last, waiting, known in rows:
                if first is not None:
                    found[str(batch_id)] = Times(first, last if known == waiting else None)
    return found
