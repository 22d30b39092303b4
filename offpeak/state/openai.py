"""Files and batches of the OpenAI-compatible API in the state database.

An OpenAI batch is one of our batches (same id) plus an `openai_batches` row; its lines
are ordinary requests of that batch, so the EXXA routes see them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Table, case, delete, func, insert, select, update

from offpeak.errors import NotFound
from offpeak.schemas import Status
from offpeak.state.batches import _chunks
from offpeak.state.db import Database
from offpeak.state.models import Batch, OpenAIBatch, OpenAIFile, Request

_REQUESTS = cast(Table, Request.__table__)
EXPIRED_CODE = "expired"  # what the scheduler records on requests past their deadline
INSERT_PAGE = 5000


# --- files -----------------------------------------------------------------------------


def add_file(db: Database, row: OpenAIFile) -> OpenAIFile:
    with db.session(write=True) as session:
        session.add(row)
    return row


def get_file(db: Database, key_id: str, file_id: str) -> OpenAIFile:
    """The caller's file, or :class:`NotFound` (also for another key's file)."""
    with db.session() as session:
        row = session.scalar(
            select(OpenAIFile).where(OpenAIFile.id == file_id, OpenAIFile.key_id == key_id)
        )
    if row is None:
        raise NotFound(f"file {file_id} not found", code="file_not_found")
    return row


def list_files(
    db: Database,
    key_id: str,
    *,
    limit: int,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> list[OpenAIFile]:
    """One page of the caller's files in creation order (ids are time-ordered)."""
    query = select(OpenAIFile).where(OpenAIFile.key_id == key_id)
    if purpose:
        query = query.where(OpenAIFile.purpose == purpose)
    if after:
        query = query.where(OpenAIFile.id > after if order == "asc" else OpenAIFile.id < after)
    query = query.order_by(OpenAIFile.id if order == "asc" else OpenAIFile.id.desc())
    with db.session() as session:
        return list(session.scalars(query.limit(limit)))


def delete_file(db: Database, key_id: str, file_id: str) -> OpenAIFile:
    """Remove the caller's file's row; the caller removes its object."""
    row = get_file(db, key_id, file_id)
    with db.session(write=True) as session:
        session.execute(
            delete(OpenAIFile).where(OpenAIFile.id == file_id, OpenAIFile.key_id == key_id)
        )
    return row


# --- batches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewBatch:
    """A checked input file, ready to become a batch."""

    id: str
    key_id: str
    input_file_id: str
    endpoint: str
    model: str
    completion_window: str
    metadata: dict[str, Any]
    created_at: int
    expires_at: int
    # (request id, custom_id, segment, estimated tokens) per line, in input order.
    requests: Sequence[tuple[str, str, str, int]]


def _request_row(new: NewBatch, rid: str, custom_id: str, segment: str, tokens: int) -> Any:
    """A request row by column name, for a Core insert (cheaper than the ORM's)."""
    return {
        "id": rid,
        "key_id": new.key_id,
        "batch_id": new.id,
        "status": Status.REGISTERED.value,
        "model": new.model,
        "completion_window": new.completion_window,
        "webhook": None,
        "metadata": {"custom_id": custom_id},
        "body": None,
        "segment": segment,
        "created_at": new.created_at,
        "expires_at": new.expires_at,
        "est_tokens": tokens,
    }


def create_batch(db: Database, new: NewBatch) -> tuple[Batch, OpenAIBatch]:
    """Insert the batch, its OpenAI row and its requests (already in segments) in one
    transaction: the scheduler never sees part of a batch."""
    batch = Batch(
        id=new.id,
        key_id=new.key_id,
        status=Status.REGISTERED.value,
        meta=new.metadata,
        webhook=None,
        created_at=new.created_at,
        expires_at=new.expires_at,
    )
    extra = OpenAIBatch(
        id=new.id,
        key_id=new.key_id,
        input_file_id=new.input_file_id,
        endpoint=new.endpoint,
        model=new.model,
        completion_window=new.completion_window,
    )
    with db.session(write=True) as session:
        session.add_all([batch, extra])
        session.flush()
        for start in range(0, len(new.requests), INSERT_PAGE):
            page = new.requests[start : start + INSERT_PAGE]
            session.execute(insert(_REQUESTS), [_request_row(new, *line) for line in page])
    return batch, extra


def _joined(key_id: str) -> Any:
    return (
        select(Batch, OpenAIBatch)
        .join(OpenAIBatch, OpenAIBatch.id == Batch.id)
        .where(OpenAIBatch.key_id == key_id)
    )


def get_batch(db: Database, key_id: str, batch_id: str) -> tuple[Batch, OpenAIBatch]:
    """The caller's OpenAI batch, or :class:`NotFound` (also for an EXXA-only batch)."""
    with db.session() as session:
        row = session.execute(_joined(key_id).where(Batch.id == batch_id)).first()
    if row is None:
        raise NotFound(f"batch {batch_id} not found", code="batch_not_found")
    return row[0], row[1]


def list_batches(
    db: Database, key_id: str, *, limit: int, after: str | None = None
) -> list[tuple[Batch, OpenAIBatch]]:
    """One page of the caller's OpenAI batches, newest first, older than ``after``."""
    query = _joined(key_id)
    if after:
        query = query.where(Batch.id < after)
    with db.session() as session:
        rows = session.execute(query.order_by(Batch.id.desc()).limit(limit))
        return [(b, o) for b, o in rows]


def open_batches(db: Database) -> list[tuple[Batch, OpenAIBatch]]:
    """Every OpenAI batch whose output files are not written yet."""
    query = (
        select(Batch, OpenAIBatch)
        .join(OpenAIBatch, OpenAIBatch.id == Batch.id)
        .where(OpenAIBatch.ended_at.is_(None))
        .order_by(Batch.id)
    )
    with db.session() as session:
        return [(b, o) for b, o in session.execute(query)]


@dataclass
class Tally:
    """A batch's requests by outcome, and their tokens."""

    total: int = 0
    completed: int = 0
    failed: int = 0  # expired ones included
    expired: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_ended_at: int | None = None

    @property
    def pending(self) -> int:
        return self.total - self.completed - self.failed - self.cancelled


def tallies(db: Database, batch_ids: Sequence[str]) -> dict[str, Tally]:
    """Requests per outcome of each batch, in one grouped query per id chunk."""
    found = {bid: Tally() for bid in batch_ids}
    expired = case((Request.error_code == EXPIRED_CODE, 1), else_=0)
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
                tally.total += n
                if status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
                    setattr(tally, str(status), getattr(tally, str(status)) + n)
                tally.expired += int(n_expired or 0)
                tally.prompt_tokens += int(prompt or 0)
                tally.completion_tokens += int(completion or 0)
                if ended is not None:
                    tally.last_ended_at = max(tally.last_ended_at or 0, int(ended))
    return found


def mark_cancelling(db: Database, batch_id: str, at: int) -> None:
    with db.session(write=True) as session:
        session.execute(
            update(OpenAIBatch)
            .where(OpenAIBatch.id == batch_id, OpenAIBatch.cancelling_at.is_(None))
            .values(cancelling_at=at)
        )


def finish_batch(
    db: Database,
    batch_id: str,
    *,
    status: str,
    finalizing_at: int,
    files: Sequence[OpenAIFile],
    output_file_id: str | None,
    error_file_id: str | None,
    at: int,
) -> bool:
    """Record a batch's output files, once (compare-and-set: False if another process
    finished it first, and then nothing is written)."""
    with db.session(write=True) as session:
        result = session.execute(
            update(OpenAIBatch)
            .where(OpenAIBatch.id == batch_id, OpenAIBatch.ended_at.is_(None))
            .values(
                status=status,
                finalizing_at=finalizing_at,
                output_file_id=output_file_id,
                error_file_id=error_file_id,
                ended_at=at,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        session.add_all(files)
    return True
