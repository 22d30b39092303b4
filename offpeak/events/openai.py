"""The lifecycle events of OpenAI batches: OpenAI's own names (`batch.completed`,
`batch.failed`, `batch.cancelled`, `batch.expired`) with OpenAI's batch object as data,
sent to the key's endpoints (an OpenAI batch has no `webhook` of its own).

Written when the batch's output files are recorded, in that transaction: only then is
the OpenAI object final (its status, files and `*_at` times).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from offpeak.events import endpoints
from offpeak.events.outbox import event_rows, insert_events, targets
from offpeak.publish.openai_objects import openai_batch_object
from offpeak.state.batches import Tally
from offpeak.state.models import Batch

# OpenAI's final batch statuses, each with its event.
EVENTS = {
    "completed": "batch.completed",
    "failed": "batch.failed",
    "cancelled": "batch.cancelled",
    "expired": "batch.expired",
}


def add_batch_event(session: Session, batch_id: str, tally: Tally, at: int) -> int:
    """The event of an OpenAI batch whose files were just recorded, one outbox row per
    endpoint of its key; returns how many."""
    session.expire_all()  # the view was just updated by a bulk UPDATE
    batch = session.get(Batch, batch_id)
    if batch is None or batch.openai is None:
        return 0
    to = targets(None, endpoints.urls_by_key(session, [batch.key_id]).get(batch.key_id, []))
    data = openai_batch_object(batch, tally)
    type_ = EVENTS.get(data.status)
    if not to or type_ is None:
        return 0
    rows = event_rows(batch.key_id, batch.id, type_, data, to, at)
    insert_events(session, rows)
    return len(rows)
