"""The outbox: lifecycle events written in the transaction of the status change that
causes them, so an event exists exactly when its change committed.

The state functions that end requests and batches call these with their own session.
An event goes to each target of the object: its own ``webhook`` URL, and the endpoints
its key registered (offpeak.events.endpoints), one row per target, so each target has
its own delivery, in order. The row holds the exact JSON body that is signed and sent,
so every attempt at an event sends the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, insert, or_, select
from sqlalchemy.orm import Session

from offpeak.events import endpoints
from offpeak.ids import new_ids
from offpeak.schemas import ErrorCode, Status, StatusObject
from offpeak.state.models import Batch, Request, WebhookEndpoint, WebhookEvent

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


def payload(type_: str, data: BaseModel, at: int) -> str:
    """The body of an event: ``{"type", "timestamp", "data"}``, the timestamp ISO 8601."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": type_, "timestamp": stamp, "data": data.model_dump(mode="json")},
        separators=(",", ":"),
    )


def targets(webhook: str | None, registered: list[str]) -> list[str]:
    """Where an object's event goes: its own webhook, then its key's endpoints; a URL
    that is both gets the event once."""
    return list(dict.fromkeys([webhook, *registered] if webhook else registered))


def event_rows(
    key_id: str, object_id: str, type_: str, data: BaseModel, to: list[str], at: int
) -> list[dict[str, object]]:
    """The outbox rows of one event, one per target (same body)."""
    body = payload(type_, data, at)
    return [_event(key_id, object_id, type_, body, target, at) for target in to]


def _event(
    key_id: str, object_id: str, type_: str, body: str, target: str, at: int
) -> dict[str, object]:
    return {
        "key_id": key_id,
        "type": type_,
        "object_id": object_id,
        "target": target,
        "payload": body,
        "status": PENDING,
        "attempts": 0,
        "created_at": at,
        "next_attempt_at": at,
    }


def insert_events(session: Session, events: list[dict[str, object]]) -> None:
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
    Request.batch_id,
)


def _watched() -> ColumnElement[bool]:
    """Requests that have a target: their own webhook, or, made alone, a key with
    endpoints (a batch's requests are reported by the batch's event)."""
    registered = select(WebhookEndpoint.key_id)
    return or_(
        Request.webhook.is_not(None),
        and_(Request.batch_id.is_(None), Request.key_id.in_(registered)),
    )


def watched_requests(session: Session, *where: ColumnElement[bool]) -> list[str]:
    """Ids of the requests matching ``where`` that have a target: read before an update
    whose rows cannot be told apart after it."""
    return list(session.scalars(select(Request.id).where(*where, _watched())))


def add_request_events(session: Session, ids: Sequence[str], at: int) -> int:
    """Events for those of ``ids`` that have a target and are now final, in id order;
    returns how many outbox rows (one per target) were written."""
    events: list[dict[str, object]] = []
    for start in range(0, len(ids), ID_CHUNK):
        rows = session.execute(
            select(*_REQUEST_COLUMNS)
            .where(Request.id.in_(ids[start : start + ID_CHUNK]), _watched())
            .order_by(Request.id)
        ).all()
        registered = endpoints.urls_by_key(session, {r.key_id for r in rows if not r.batch_id})
        for row in rows:
            type_ = event_type("request", row.status, row.error_code == ErrorCode.EXPIRED)
            to = targets(row.webhook, [] if row.batch_id else registered.get(row.key_id, []))
            if type_ and to:
                events += event_rows(row.key_id, row.id, type_, StatusObject.of(row), to, at)
    insert_events(session, events)
    return len(events)


def add_batch_event(session: Session, batch_id: str, at: int) -> bool:
    """The event of a batch that has just ended, to its webhook and its key's endpoints.
    An OpenAI batch's endpoints get theirs when its files are recorded (events.openai)."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is None:
        return False
    registered = {} if batch.openai else endpoints.urls_by_key(session, [batch.key_id])
    to = targets(batch.webhook, registered.get(batch.key_id, []))
    if not to:
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
    data = StatusObject.of(batch)
    insert_events(session, event_rows(batch.key_id, batch.id, type_, data, to, at))
    return True
