"""Requests in the state database: insert, read, list, cancel, and the sealing queue."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    ColumnElement,
    Text,
    cast,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from offpeak.errors import Conflict, NotFound
from offpeak.events import outbox
from offpeak.ingest.estimate import estimate_tokens
from offpeak.ingest.rows import records_table, request_row
from offpeak.schemas import RequestCreate, Status
from offpeak.state.arrow_reader import arrow_pages
from offpeak.state.db import Database
from offpeak.state.inserter import insert_table
from offpeak.state.models import Request

CANCELLABLE = (Status.REGISTERED, Status.IN_PROGRESS)


def new_request_row(key_id: str, create: RequestCreate, created_at: int) -> dict[str, Any]:
    """The row of an accepted single request (pure: no I/O), its tokens estimated
    without a model spec: see offpeak.ingest.rows.request_row."""
    return request_row(key_id, create, created_at, estimate_tokens(create.request_body))


def insert_requests(
    db: Database, rows: pa.Table | Sequence[dict[str, Any]], *, foreign_keys: bool = True
) -> None:
    """Commit new requests, the table of offpeak.ingest.rows or rows as
    :func:`new_request_row` makes them, in one transaction; when this returns they are
    durable. The one insert of every ingest path (offpeak.state.inserter).

    (The API's hot path goes through the group committer's RequestInserter, which shares
    the insert but keeps its connection.)
    """
    table = rows if isinstance(rows, pa.Table) else records_table(rows)
    insert_table(db, table, foreign_keys=foreign_keys)


def get_request(db: Database, key_id: str, request_id: str) -> Request:
    """The caller's request, or :class:`NotFound` (also for another key's request)."""
    with db.session() as session:
        row = session.scalar(
            select(Request).where(Request.id == request_id, Request.key_id == key_id)
        )
    if row is None:
        raise NotFound(f"request {request_id} not found", code="request_not_found")
    return row


def list_requests(
    db: Database,
    key_id: str,
    *,
    after: str | None = None,
    limit: int = 1000,
    batch_id: str | None = None,
    status: Status | None = None,
) -> list[Request]:
    """One page of the caller's requests in id (creation) order, after ``after``."""
    query = select(Request).where(Request.key_id == key_id)
    if after:
        query = query.where(Request.id > after)
    if batch_id:
        query = query.where(Request.batch_id == batch_id)
    if status:
        query = query.where(Request.status == status.value)
    with db.session() as session:
        return list(session.scalars(query.order_by(Request.id).limit(limit)))


# What a published line needs of a request, by name: plain columns, no ORM object, and
# the metadata as the JSON text stored (not parsed). Its batch id is the batch's.
LINE_COLUMNS: dict[str, InstrumentedAttribute[Any] | ColumnElement[Any]] = {
    "id": Request.id,
    "status": Request.status,
    "created_at": Request.created_at,
    "expires_at": Request.expires_at,
    "in_progress_at": Request.in_progress_at,
    "ended_at": Request.ended_at,
    "metadata": cast(Request.meta, Text),
    "body": Request.body,
    "segment": Request.segment,
    "result_key": Request.result_key,
    "error_code": Request.error_code,
    "error_message": Request.error_message,
    "completion_window": Request.completion_window,
    "webhook": Request.webhook,
    "carbon": Request.carbon,
}


# LINE_COLUMNS as Arrow reads them: times as integers, the rest text.
LINE_SCHEMA = pa.schema(
    [(name, pa.int64() if name.endswith("_at") else pa.string()) for name in LINE_COLUMNS]
)


def batch_line_pages(db: Database, key_id: str, batch_id: str, page: int) -> Iterator[pa.Table]:
    """A batch's requests in id order as Arrow tables of LINE_COLUMNS (LINE_SCHEMA),
    ``page`` rows at a time, memory flat: read by the driver straight into Arrow
    (offpeak.state.arrow_reader), never as Python objects, for publishing whole batches.
    """
    query = select(*LINE_COLUMNS.values()).where(
        Request.key_id == key_id, Request.batch_id == batch_id
    )
    return arrow_pages(db, query, Request.id, LINE_SCHEMA, page)


def batch_line_rows(
    session: Session, key_id: str, batch_id: str, page: int
) -> Iterator[Sequence[Sequence[Any]]]:
    """A batch's requests in id order as tuples of LINE_COLUMNS, ``page`` at a time: a
    query per page, from the last id of the page before, so memory stays flat.

    Plain columns (text and integers, nothing for SQLAlchemy to convert), so the rows
    come from the driver's cursor as they are: a Row object per request would cost a
    third of publishing. Whoever writes them out encodes them.
    """
    query = (
        select(*LINE_COLUMNS.values())
        .where(Request.key_id == key_id, Request.batch_id == batch_id)
        .order_by(Request.id)
        .limit(page)
    )
    after = ""
    while True:
        with closing(session.connection().execute(query.where(Request.id > after))) as result:
            rows: Sequence[Sequence[Any]] = result.cursor.fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def cancel_request(db: Database, key_id: str, request_id: str, at: int) -> Request:
    """Cancel a request not yet final (compare-and-set on its status)."""
    with db.session(write=True) as session:
        result = session.execute(
            update(Request)
            .where(
                Request.id == request_id,
                Request.key_id == key_id,
                Request.status.in_([s.value for s in CANCELLABLE]),
            )
            .values(status=Status.CANCELLED.value, ended_at=at)
        )
        cancelled = result.rowcount == 1  # type: ignore[attr-defined]
        if cancelled:
            outbox.add_request_events(session, [request_id], at)
    row = get_request(db, key_id, request_id)
    if not cancelled:
        raise Conflict(
            f"request {request_id} is already {row.status} and cannot be cancelled",
            code="request_not_cancellable",
        )
    return row


@dataclass(frozen=True)
class UnsealedRow:
    id: str
    key_id: str
    model: str
    created_at: int
    expires_at: int
    body: str
    meta: dict[str, Any]


def unsealed_requests(session: Session, limit: int, *, lock: bool = False) -> list[UnsealedRow]:
    """The oldest accepted requests not yet sealed into a segment.

    ``lock=True`` (PostgreSQL) locks them for this transaction and skips rows another
    writer holds, so two API processes never seal the same rows.
    """
    query = (
        select(
            Request.id,
            Request.key_id,
            Request.model,
            Request.created_at,
            Request.expires_at,
            Request.body,
            Request.meta,
        )
        .where(Request.segment.is_(None))
        .order_by(Request.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return [UnsealedRow(*row) for row in session.execute(query)]


def mark_sealed(session: Session, ids: Sequence[str], segment: str) -> int:
    """Point rows at their segment and drop their bodies from the database.

    Only rows still unsealed are touched: the segment pointer in the database is the
    one source of truth, so a segment written twice after a crash is harmless.
    """
    total = 0
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        result = session.execute(
            update(Request)
            .where(Request.id.in_(chunk), Request.segment.is_(None))
            .values(segment=segment, body=None)
        )
        total += result.rowcount  # type: ignore[attr-defined]
    return total
