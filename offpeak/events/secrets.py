"""Webhook signing secrets, one live per API key, in the Standard Webhooks format
(``whsec_`` + base64 of 32 random bytes).

Rotating issues a new secret and lets the old one retire after an overlap: until then
every event is signed with both (the ``webhook-signature`` header lists one signature
per secret), so a receiver can switch to the new secret whenever it likes.
"""

from __future__ import annotations

import base64
import secrets

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from offpeak.errors import NotFound
from offpeak.ids import new_id
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, WebhookSecret

PREFIX = "whsec_"


def _new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def issue(session: Session, key_id: str, at: int, overlap_seconds: int = 0) -> str:
    """Add a new secret for the key; the live ones retire ``overlap_seconds`` later
    (those retiring sooner keep their date). Returns the new secret, to show once."""
    retires = at + overlap_seconds
    session.execute(
        update(WebhookSecret)
        .where(
            WebhookSecret.key_id == key_id,
            or_(WebhookSecret.retires_at.is_(None), WebhookSecret.retires_at > retires),
        )
        .values(retires_at=retires)
    )
    secret = _new_secret()
    session.add(WebhookSecret(id=new_id(), key_id=key_id, secret=secret, created_at=at))
    return secret


def rotate(db: Database, key_id: str, at: int, overlap_seconds: int) -> tuple[ApiKey, str]:
    """`offpeak keys rotate-webhook-secret`: a key (by id or printed prefix) gets a new
    secret; its old ones sign beside it for ``overlap_seconds``."""
    with db.session(write=True) as session:
        key = session.scalar(
            select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
        )
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        return key, issue(session, key.id, at, overlap_seconds)


def create(db: Database, key_id: str, at: int) -> str:
    """The first secret of a new key (what `offpeak keys create` shows once)."""
    with db.session(write=True) as session:
        return issue(session, key_id, at)


def live(session: Session, key_id: str, at: int) -> list[str]:
    """The secrets that sign the key's events now, newest first; one is issued when the
    key has none (a key made before webhooks existed: `rotate` shows a new one). In a
    write session: the deliveries to a key's targets run side by side, and the first to
    find no secret issues it while holding the key's row, so the others sign with it
    rather than each issuing one of its own."""
    query = (
        select(WebhookSecret.secret)
        .where(
            WebhookSecret.key_id == key_id,
            or_(WebhookSecret.retires_at.is_(None), WebhookSecret.retires_at > at),
        )
        .order_by(WebhookSecret.id.desc())
    )
    if found := list(session.scalars(query)):
        return found
    session.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())
    return list(session.scalars(query)) or [issue(session, key_id, at)]
