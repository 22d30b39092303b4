"""Webhook endpoints: URLs a key registers for all its events, OpenAI's project-level
style, beside the `webhook` of a single request or batch.

An endpoint gets the events of the key's requests made alone and of its batches (in the
OpenAI dialect's names and shape for OpenAI batches), not one event per request of a
batch: the batch's own event reports those. Removing an endpoint stops new events; those
already in the outbox are still delivered (they committed with their status change).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from offpeak.errors import Conflict, NotFound
from offpeak.events.guard import Guard
from offpeak.ids import new_id
from offpeak.state.db import Database
from offpeak.state.models import WebhookEndpoint

# Every event is sent once per endpoint: a bound keeps one key from multiplying the work.
MAX_PER_KEY = 10


def add(
    db: Database,
    key_id: str,
    url: str,
    at: int,
    *,
    guard: Guard,
    description: str | None = None,
) -> WebhookEndpoint:
    """Register ``url`` for the key's events, after the SSRF guard's check (422 with
    its reason); a URL the key has already, or an eleventh, is a 409."""
    guard.check(url)
    with db.session(write=True) as session:
        urls = list(session.scalars(select(WebhookEndpoint.url).where(_of(key_id))))
        if url in urls:
            raise Conflict(
                f"{url} is already a webhook endpoint of this key",
                code="webhook_endpoint_exists",
            )
        if len(urls) >= MAX_PER_KEY:
            raise Conflict(
                f"a key has at most {MAX_PER_KEY} webhook endpoints; remove one first",
                code="webhook_endpoint_limit",
            )
        row = WebhookEndpoint(
            id=new_id(), key_id=key_id, url=url, description=description, created_at=at
        )
        session.add(row)
    return row


def list_endpoints(db: Database, key_id: str) -> list[WebhookEndpoint]:
    """The key's endpoints, oldest first."""
    with db.session() as session:
        return list(session.scalars(select(WebhookEndpoint).where(_of(key_id)).order_by("id")))


def remove(db: Database, key_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Remove one of the key's endpoints, or :class:`NotFound`."""
    with db.session(write=True) as session:
        row = session.scalar(
            select(WebhookEndpoint).where(_of(key_id), WebhookEndpoint.id == endpoint_id)
        )
        if row is None:
            raise NotFound(
                f"webhook endpoint {endpoint_id} not found", code="webhook_endpoint_not_found"
            )
        session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return row


def urls_by_key(session: Session, key_ids: Iterable[str]) -> dict[str, list[str]]:
    """The endpoint URLs of each of these keys (keys without any are left out), in
    registration order: read in the transaction that writes the events."""
    wanted = sorted(set(key_ids))
    found: dict[str, list[str]] = {}
    if not wanted:
        return found
    rows = session.execute(
        select(WebhookEndpoint.key_id, WebhookEndpoint.url)
        .where(WebhookEndpoint.key_id.in_(wanted))
        .order_by(WebhookEndpoint.id)
    )
    for key_id, url in rows:
        found.setdefault(key_id, []).append(url)
    return found


def _of(key_id: str) -> ColumnElement[bool]:
    return WebhookEndpoint.key_id == key_id
