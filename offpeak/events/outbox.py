"""The outbox: lifecycle events written in the transaction of the status change that
causes them, so an event exists exactly when its change committed.

The state functions that end requests and batches call these with their own session.
Only objects with a ``webhook`` URL get events; the row holds the exact JSON body that
is signed and sent, so every attempt at an event sends the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, select
from sqlalchemy.orm import Session

from offpeak.ids import new_ids
from offpeak.schemas import ErrorCode, Status, StatusObject
from offpeak.state.models import Batch, Request, WebhookEvent

ID_CHUNK = 5000
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

REQUEST_EVENTS = ("request.completed", "request.failed", "request.cancelled", "request.expired")
BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
EVENT_TYPES = REQUEST_EVENTS + BATCH_EVENTS


def event_type(kind: str, status: str, expired: bool) -> str | None:
    """The event of an object that reached ``status``; None while it is not final.
    An expired request (failed with code `expired`), or a batch that ended with any,
    is `<kind>.expired`."""
    if status not in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        return None
    if expired and status != Status.CANCELLED:
        return f"{kind}.expired"
    return f"{kind}.{status}"


def payload(type_: str, data: StatusObject, at: int) -> str:
    """The body of an event: ``{"type", "timestamp", "data"}``, the timestamp ISO 8601."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": type_, "timestamp": stamp, "data": data.model_dump(mode="json")},
        separators=(",", ":"),
    )


def _event(row: Any, type_: str, at: int) -> dict[str, object]:
    return {
        "key_id": row.key_id,
        "type": type_,
        "object_id": row.id,
        "target": row.webhook,
        "payload": payload(type_, StatusObject.of(row), at),
        "status": PENDING,
        "attempts": 0,
        "created_at": at,
        "next_attempt_at": at,
    }


def _insert(session: Session, events: list[dict[str, object]]) -> None:
    # Ids ascend in the order given and past every earlier call of this process: the
    # delivery order of a target's events is their id order.
    if events:
        ids = new_ids(len(events)).to_pylist()
        rows = [{**e, "id": i} for e, i in zip(events, ids, strict=True)]
        session.execute(insert(WebhookEvent), rows)


# Read as plain rows: never the body, nor a stale object from the session's identity map.
_REQUEST_COLUMNS = (
    Request.id,
    Request.key_id,
    Request.status,
    Request.created_at,
    Request.expires_at,
    Request.in_progress_at,
    Request.ended_at,
    Request.webhook,
    Request.error_code,
)


def watched_requests(session: Session, *where: ColumnElement[bool]) -> list[str]:
    """Ids of the requests matching ``where`` that have a webhook: read before an update
    whose rows cannot be told apart after it."""
    return list(session.scalars(select(Request.id).where(*where, Request.webhook.is_not(None))))


def add_request_events(session: Session, ids: Sequence[str], at: int) -> int:
    """Events for those of ``ids`` that have a webhook and are now final, in id order."""
    events = []
    for start in range(0, len(ids), ID_CHUNK):
        rows = session.execute(
            select(*_REQUEST_COLUMNS)
            .where(Request.id.in_(ids[start : start + ID_CHUNK]), Request.webhook.is_not(None))
            .order_by(Request.id)
        )
        for row in rows:
            type_ = event_type("request", row.status, row.error_code == ErrorCode.EXPIRED)
            if type_:
                events.append(_event(row, type_, at))
    _insert(session, events)
    return len(events)


def add_batch_event(session: Session, batch_id: str, at: int) -> bool:
    """The event of a batch that has just ended, when it has a webhook."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is None or batch.webhook is None:
        return False
    expired = session.scalar(
        select(
            select(Request.id)
            .where(Request.batch_id == batch_id, Request.error_code == ErrorCode.EXPIRED)
            .exists()
        )
    )
    type_ = event_type("batch", batch.status, bool(expired))
    if type_ is None:
        return False
    _insert(session, [_event(batch, type_, at)])
    return True
