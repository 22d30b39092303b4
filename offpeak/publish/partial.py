"""Partial results: the lines of a batch's requests that have already ended, while the
batch runs or after it was cancelled (a cancelled batch has no results file).

A request is in once it is final and its job has ended too (a job ends after its
footprint is accounted): from then on its line is the one the published results file
will hold. The rest count as pending.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import ColumnElement, func, select

from offpeak.publish.objects import request_objects
from offpeak.schemas import ACTIVE_JOB_STATUSES, FINAL_STATUSES
from offpeak.state import requests
from offpeak.state.db import Database
from offpeak.state.models import Batch, Job, Request
from offpeak.storage import ObjectStore

PAGE = 1000


def _settled() -> ColumnElement[bool]:
    running = (
        select(Job.id)
        .where(Job.id == Request.job_id, Job.status.in_(list(ACTIVE_JOB_STATUSES)))
        .exists()
    )
    return Request.status.in_([s.value for s in FINAL_STATUSES]) & ~running


def pending_count(db: Database, batch: Batch) -> int:
    """How many of the batch's requests partial results leave out for now."""
    with db.session() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Request)
            .where(Request.batch_id == batch.id, ~_settled())
        )
    return int(count or 0)


def _settled_ids(db: Database, ids: list[str]) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Request.id).where(Request.id.in_(ids), _settled())))


def partial_lines(db: Database, store: ObjectStore, batch: Batch) -> Iterator[bytes]:
    """JSONL of the batch's ended requests in id order, a page at a time."""
    after: str | None = None
    while True:
        rows = requests.list_requests(db, batch.key_id, after=after, limit=PAGE, batch_id=batch.id)
        if not rows:
            return
        after = rows[-1].id
        done = _settled_ids(db, [r.id for r in rows])
        ended = [r for r in rows if r.id in done]
        if ended:
            yield b"".join(
                obj.model_dump_json().encode() + b"\n" for obj in request_objects(store, ended)
            )
