"""Batches made through Anthropic's Message Batches API, in the state database.

Such a batch is one of our batches, marked in its metadata (`offpeak_dialect`), with
ordinary requests whose metadata holds each entry's `custom_id`: the EXXA routes see it
too, and it is counted, cancelled and published by :mod:`offpeak.state.batches`. Here
it is inserted, read and listed as the Anthropic routes see it, and deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from sqlalchemy import ColumnElement, delete, select

from offpeak.errors import Conflict, NotFound
from offpeak.ingest.rows import metadata_json, request_table
from offpeak.schemas import FINAL_STATUSES, Status
from offpeak.state.batches import unsettled
from offpeak.state.db import Database
from offpeak.state.inserter import write_requests
from offpeak.state.models import Batch, Request

DIALECT_KEY = "offpeak_dialect"
DIALECT = "anthropic"
COMPLETION_WINDOW = "24h"  # Anthropic's: a batch expires 24 hours after creation
INSERT_PAGE = 5000


def _anthropic() -> ColumnElement[bool]:
    return Batch.meta[DIALECT_KEY].as_string() == DIALECT


@dataclass(frozen=True)
class NewRequests:
    """A page of checked entries already written to a segment."""

    ids: Sequence[str]
    custom_ids: Sequence[str]
    models: Sequence[str]
    segment: str
    est_tokens: Sequence[int]


def insert_batch(
    db: Database,
    *,
    batch_id: str,
    key_id: str,
    created_at: int,
    expires_at: int,
    pages: Sequence[NewRequests],
) -> Batch:
    """Insert the batch and its requests (already in segments) in one transaction: the
    scheduler never sees part of a batch."""
    batch = Batch(
        id=batch_id,
        key_id=key_id,
        status=Status.REGISTERED.value,
        meta={DIALECT_KEY: DIALECT},
        webhook=None,
        created_at=created_at,
        expires_at=expires_at,
        openai=None,
    )
    with db.session(write=True) as session:
        session.add(batch)
        session.flush()
        for page in pages:
            for start in range(0, len(page.ids), INSERT_PAGE):
                part = slice(start, start + INSERT_PAGE)
                table = request_table(
                    ids=pa.array(page.ids[part], pa.string()),
                    key_id=key_id,
                    batch_id=batch_id,
                    model=page.models[part],
                    completion_window=COMPLETION_WINDOW,
                    metadata=[metadata_json({"custom_id": c}) for c in page.custom_ids[part]],
                    segment=page.segment,
                    created_at=created_at,
                    expires_at=expires_at,
                    est_tokens=page.est_tokens[part],
                )
                # The one insert of new requests, in this transaction (raw DB-API cursor).
                cursor = session.connection().connection.cursor()
                write_requests(cursor, session.get_bind().dialect.name, table)
    return batch


def get_batch(db: Database, key_id: str, batch_id: str) -> Batch:
    """The caller's Anthropic batch, or :class:`NotFound` (also for another key's batch
    and for one made through another API)."""
    query = select(Batch).where(Batch.id == batch_id, Batch.key_id == key_id, _anthropic())
    with db.session() as session:
        batch = session.scalar(query)
    if batch is None:
        raise NotFound(f"message batch {batch_id} not found", code="message_batch_not_found")
    return batch


def list_batches(
    db: Database,
    key_id: str,
    *,
    limit: int,
    before_id: str | None = None,
    after_id: str | None = None,
) -> list[Batch]:
    """One page of the caller's Anthropic batches, newest first. ``after_id`` pages on
    towards older batches, ``before_id`` back towards newer ones (the page still comes
    newest first); ids are time-ordered."""
    query = select(Batch).where(Batch.key_id == key_id, _anthropic())
    if after_id:
        query = query.where(Batch.id < after_id).order_by(Batch.id.desc())
    if before_id:
        query = query.where(Batch.id > before_id)
        # The `limit` nearest newer ones, then put back newest first.
        with db.session() as session:
            nearest = list(session.scalars(query.order_by(Batch.id).limit(limit)))
        return nearest[::-1]
    with db.session() as session:
        return list(session.scalars(query.order_by(Batch.id.desc()).limit(limit)))


def delete_batch(db: Database, key_id: str, batch_id: str) -> Batch:
    """Delete an ended batch and its requests (:class:`Conflict` while it is still
    processing or cancelling); the caller removes its results object, if any."""
    batch = get_batch(db, key_id, batch_id)
    if Status(batch.status) not in FINAL_STATUSES or unsettled(db, [batch_id]):
        raise Conflict(
            f"message batch {batch_id} has not ended; cancel it and wait for it to end "
            "before deleting it",
            code="message_batch_not_ended",
        )
    with db.session(write=True) as session:
        session.execute(delete(Request).where(Request.batch_id == batch_id))
        session.execute(delete(Batch).where(Batch.id == batch_id, Batch.key_id == key_id))
    return batch
