"""Files of the OpenAI-compatible API in the state database, and what its batches add.

An OpenAI batch is one of our batches with its OpenAI view (`Batch.openai`, same id);
its lines are ordinary requests of that batch, so the EXXA routes see them too. It is
read, listed, counted, cancelled and finished by :mod:`offpeak.state.batches`; here it
is created, and its output files recorded once written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from sqlalchemy import delete, select, update

from offpeak.errors import NotFound
from offpeak.events import openai as openai_events
from offpeak.ingest.rows import metadata_json, request_table
from offpeak.schemas import Status
from offpeak.state.batches import Tally
from offpeak.state.db import Database
from offpeak.state.inserter import write_requests
from offpeak.state.models import Batch, OpenAIFile, OpenAIView

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
    # The caller's `output_expires_after` seconds (None: the retention setting).
    retention_seconds: int | None = None


def _request_table(new: NewBatch, page: Sequence[tuple[str, str, str, int]]) -> pa.Table:
    """A page of the batch's requests as the one row builder makes them."""
    ids, custom_ids, segments, tokens = zip(*page, strict=True)
    return request_table(
        ids=ids,
        key_id=new.key_id,
        batch_id=new.id,
        model=new.model,
        completion_window=new.completion_window,
        metadata=[metadata_json({"custom_id": custom_id}) for custom_id in custom_ids],
        segment=segments[0] if len(set(segments)) == 1 else segments,
        created_at=new.created_at,
        expires_at=new.expires_at,
        est_tokens=tokens,
    )


def create_batch(db: Database, new: NewBatch) -> Batch:
    """Insert the batch with its OpenAI view, and its requests (already in segments), in
    one transaction: the scheduler never sees part of a batch."""
    batch = Batch(
        id=new.id,
        key_id=new.key_id,
        status=Status.REGISTERED.value,
        meta=new.metadata,
        webhook=None,
        created_at=new.created_at,
        expires_at=new.expires_at,
        retention_seconds=new.retention_seconds,
        openai=OpenAIView(
            id=new.id,
            key_id=new.key_id,
            input_file_id=new.input_file_id,
            endpoint=new.endpoint,
            model=new.model,
            completion_window=new.completion_window,
        ),
    )
    with db.session(write=True) as session:
        session.add(batch)
        session.flush()
        for start in range(0, len(new.requests), INSERT_PAGE):
            page = new.requests[start : start + INSERT_PAGE]
            # The one insert of new requests, in this transaction (raw DB-API cursor).
            cursor = session.connection().connection.cursor()
            write_requests(cursor, session.get_bind().dialect.name, _request_table(new, page))
    return batch


def record_files(
    db: Database,
    batch_id: str,
    *,
    status: str,
    finalizing_at: int,
    files: Sequence[OpenAIFile],
    output_file_id: str | None,
    error_file_id: str | None,
    tally: Tally,
    at: int,
) -> bool:
    """Record an ended batch's output files and its final OpenAI status, once
    (compare-and-set: False if another process recorded them first, and then nothing
    is written), with its event to the key's webhook endpoints."""
    with db.session(write=True) as session:
        result = session.execute(
            update(OpenAIView)
            .where(OpenAIView.id == batch_id, OpenAIView.ended_at.is_(None))
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
        openai_events.add_batch_event(session, batch_id, tally, at)
    return True
