"""Retention: results, files, request bodies and chunk files live a limited time.

A batch's results (its JSONL, and its OpenAI output and error files), its requests'
bodies (in segments) and results (in chunk files) expire ``results_retention`` seconds
after the batch ended, or after the ``output_expires_after`` its OpenAI caller set; a
request outside any batch expires that long after it ended. An uploaded OpenAI file
expires at the ``expires_after`` its caller set, else that long after the last batch made
from it ended. :func:`collect` (the `gc` deployment, daily) deletes the expired objects
and marks the rows: a request keeps its status and metadata, a batch and a file their
row; the routes that would serve the bytes answer ``410 result_expired``.

Segments and chunk files hold many requests, and a request's batch may end long after
another's: such a file is deleted only when every request in it has expired. Deletion
comes before marking, so a run cut short deletes again (a no-op) rather than forgets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from offpeak.state.db import Database
from offpeak.state.models import Batch, OpenAIFile, OpenAIView, Request
from offpeak.storage import ObjectStore

PAGE = 1000  # requests marked per transaction

# --- decisions (pure) ------------------------------------------------------------------


def expired(ended_at: int | None, ttl: int, at: int) -> bool:
    """Whether something that ended at ``ended_at`` (None: not yet) and lives ``ttl``
    seconds after that has expired at ``at``."""
    return ended_at is not None and ended_at + ttl <= at


def batch_ttl(retention_seconds: int | None, retention: int) -> int:
    """A batch's lifetime after its end: its caller's, else the setting."""
    return retention if retention_seconds is None else retention_seconds


def file_expires_at(
    created_at: int, expires_at: int | None, batch_ends: Sequence[int | None], retention: int
) -> int | None:
    """When an uploaded file expires: at its caller's ``expires_at``; else ``retention``
    after the last of its batches ended (its upload, without any); None while a batch
    made from it has not ended."""
    if expires_at is not None:
        return expires_at
    if any(end is None for end in batch_ends):
        return None
    return max([created_at, *(end for end in batch_ends if end is not None)]) + retention


def deletable(holders: Mapping[str, Iterable[str]], expiring: Iterable[str]) -> list[str]:
    """The shared objects (segments, chunk files) to delete: those whose every holder
    (each request not purged yet that lives in it) is among ``expiring``."""
    going = set(expiring)
    return sorted(key for key, ids in holders.items() if set(ids) <= going)


# --- collection (I/O) ------------------------------------------------------------------


@dataclass
class Collected:
    """What one run removed."""

    batches: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    requests: int = 0
    objects: list[str] = field(default_factory=list)  # every object key deleted


def collect(db: Database, store: ObjectStore, retention: int, at: int) -> Collected:
    """Delete every object expired at ``at`` and mark its rows; see the module's doc."""
    done = Collected()
    _collect_batches(db, store, retention, at, done)
    after: str | None = ""
    while after is not None:
        after = _collect_requests(db, store, retention, at, done, after)
    _collect_files(db, store, retention, at, done)
    return done


def _delete(store: ObjectStore, keys: Iterable[str | None], done: Collected) -> None:
    for key in keys:
        if key:
            store.delete(key)
            done.objects.append(key)


def _collect_batches(
    db: Database, store: ObjectStore, retention: int, at: int, done: Collected
) -> None:
    query = (
        select(Batch)
        .outerjoin(OpenAIView, OpenAIView.id == Batch.id)
        .where(Batch.purged_at.is_(None), Batch.ended_at.is_not(None))
        # An OpenAI batch is over once its output files are written.
        .where(or_(OpenAIView.id.is_(None), OpenAIView.ended_at.is_not(None)))
    )
    with db.session() as session:
        batches = [
            b
            for b in session.scalars(query).unique()
            if expired(b.ended_at, batch_ttl(b.retention_seconds, retention), at)
        ]
        file_ids = [
            fid
            for b in batches
            if b.openai is not None
            for fid in (b.openai.output_file_id, b.openai.error_file_id)
            if fid
        ]
        files = list(session.scalars(select(OpenAIFile).where(OpenAIFile.id.in_(file_ids))))
    for batch in batches:
        _delete(store, [batch.results_key], done)
    _delete(store, [f.storage_key for f in files if f.purged_at is None], done)
    with db.session(write=True) as session:
        session.execute(
            update(Batch).where(Batch.id.in_([b.id for b in batches])).values(purged_at=at)
        )
        session.execute(
            update(OpenAIFile)
            .where(OpenAIFile.id.in_(file_ids), OpenAIFile.purged_at.is_(None))
            .values(purged_at=at)
        )
    done.batches += [b.id for b in batches]
    done.files += [f.id for f in files if f.purged_at is None]


def _expired_requests(retention: int, at: int) -> ColumnElement[bool]:
    """Requests that ended and have expired: a lone one ``retention`` after its end, one
    of a batch after the batch's end and lifetime (a batch still open keeps them all)."""
    ttl = func.coalesce(Batch.retention_seconds, retention)
    return and_(
        Request.purged_at.is_(None),
        Request.ended_at.is_not(None),
        or_(
            and_(Request.batch_id.is_(None), Request.ended_at + retention <= at),
            and_(Batch.ended_at.is_not(None), Batch.ended_at + ttl <= at),
        ),
    )


def _holders(
    db: Database, column: InstrumentedAttribute[str | None], keys: set[str], page: Sequence[str]
) -> dict[str, list[str]]:
    """For each object key, a request not purged yet that lives in it and is not in
    ``page`` (none: only the page's requests still hold it); what :func:`deletable`
    needs. One indexed probe per key (ix_requests_segment, ix_requests_result_key):
    fetching every holder would read a whole segment's requests for each page of it."""
    holders: dict[str, list[str]] = {}
    with db.session() as session:
        for key in sorted(keys):
            other = session.scalar(
                select(Request.id)
                .where(column == key, Request.purged_at.is_(None), Request.id.not_in(page))
                # In id order, so the planner walks the (key, id) index rather than scan
                # the table for a row it expects to find at once.
                .order_by(Request.id)
                .limit(1)
            )
            holders[key] = [other] if other else []
    return holders


def _collect_requests(
    db: Database, store: ObjectStore, retention: int, at: int, done: Collected, after: str
) -> str | None:
    """The expired requests among the next PAGE ended ones past ``after`` in id order:
    their lone objects deleted, they marked. The last id looked at (None: no more).

    A window of the index of ended requests not purged (ix_requests_ended) first, then
    the expiry test on it: asked in one query with its join to the batches, the planner
    joins every ended request and sorts them for each page. Requests kept for longer
    (their batch open, or its lifetime not over) are walked past once per run."""
    window = (
        select(Request.id)
        .where(Request.id > after, Request.ended_at.is_not(None), Request.purged_at.is_(None))
        .order_by(Request.id)
        .limit(PAGE)
    )
    with db.session() as session:
        looked = list(session.scalars(window))
        if not looked:
            return None
        page = session.execute(
            select(Request.id, Request.segment, Request.result_key)
            .outerjoin(Batch, Batch.id == Request.batch_id)
            .where(Request.id.in_(looked), _expired_requests(retention, at))
            .order_by(Request.id)
        ).all()
    ids = [rid for rid, _, _ in page]
    for column, keys in (
        (Request.segment, {seg for _, seg, _ in page if seg}),
        (Request.result_key, {res for _, _, res in page if res}),
    ):
        if keys:
            _delete(store, deletable(_holders(db, column, keys, ids), ids), done)
    if ids:
        with db.session(write=True) as session:
            session.execute(
                update(Request).where(Request.id.in_(ids)).values(purged_at=at, body=None)
            )
    done.requests += len(ids)
    return str(looked[-1])


def _collect_files(
    db: Database, store: ObjectStore, retention: int, at: int, done: Collected
) -> None:
    """Uploaded input files (output files go with their batch)."""
    with db.session() as session:
        files = list(
            session.scalars(
                select(OpenAIFile).where(
                    OpenAIFile.purged_at.is_(None), OpenAIFile.purpose == "batch"
                )
            )
        )
        ends: dict[str, list[int | None]] = {f.id: [] for f in files}
        query = (
            select(OpenAIView.input_file_id, Batch.ended_at)
            .join(Batch, Batch.id == OpenAIView.id)
            .where(OpenAIView.input_file_id.in_(list(ends)))
        )
        for file_id, ended_at in session.execute(query):
            ends[file_id].append(ended_at)
    gone = [
        f
        for f in files
        if (when := file_expires_at(f.created_at, f.expires_at, ends[f.id], retention)) is not None
        and when <= at
    ]
    _delete(store, [f.storage_key for f in gone], done)
    with db.session(write=True) as session:
        session.execute(
            update(OpenAIFile).where(OpenAIFile.id.in_([f.id for f in gone])).values(purged_at=at)
        )
    done.files += [f.id for f in gone]
