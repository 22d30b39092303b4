"""Idempotency keys: the first answer to a create, kept for a client that retries.

A create sent with an ``Idempotency-Key`` first *claims* the key (an insert that the
primary key lets only one caller win), then does its work, then *completes* the claim
with its answer. A retry finds the claim: it gets the stored answer when its body is
the same, a :class:`Conflict` when it differs or while the first is still running.
Keys are per API key and per route; they expire after ``ttl`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from offpeak.errors import Conflict
from offpeak.state.db import Database
from offpeak.state.models import IdempotencyKey

TTL_SECONDS = 24 * 3600
# A claim still unanswered after this long belongs to a process that died mid-request:
# a retry may take it over. Longer than any create takes (a large dataset included).
LEASE_SECONDS = 15 * 60
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    """What an earlier request with the same key left: its answer once it has one."""

    body_sha256: str
    status: int | None  # None while that request is still being answered
    response: str | None


def _claim_row(db: Database, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless its key is taken; True when this call inserted it."""
    dialect = postgresql if db.dialect == "postgresql" else sqlite
    query = (
        dialect.insert(IdempotencyKey)
        .values(**row)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.created_at)  # rowcount is not reliable here on PostgreSQL
    )
    with db.session(write=True) as session:
        return session.execute(query).first() is not None


def claim(
    db: Database,
    key_id: str,
    route: str,
    idempotency_key: str,
    at: int,
    *,
    ttl: int = TTL_SECONDS,
    lease: int = LEASE_SECONDS,
) -> Stored | None:
    """Claim ``idempotency_key`` for a request arriving at ``at``.

    None: the caller owns the key and does the work, then calls :func:`complete` (or
    :func:`release` when it failed). Otherwise what the earlier request left.
    """
    pk = (
        IdempotencyKey.key_id == key_id,
        IdempotencyKey.route == route,
        IdempotencyKey.idempotency_key == idempotency_key,
    )
    row: dict[str, Any] = {
        "key_id": key_id,
        "route": route,
        "idempotency_key": idempotency_key,
        "body_sha256": "",
        "status": None,
        "response": None,
        "created_at": at,
    }
    for _ in range(3):  # a claim can vanish between two steps (released, purged)
        if _claim_row(db, row):
            return None
        # Taken: an expired answer, or an abandoned claim, is taken over in one update.
        stale = or_(
            IdempotencyKey.created_at < at - ttl,
            and_(IdempotencyKey.status.is_(None), IdempotencyKey.created_at < at - lease),
        )
        with db.session(write=True) as session:
            take = update(IdempotencyKey).where(*pk, stale).values(**row)
            if session.execute(take.returning(IdempotencyKey.created_at)).first() is not None:
                return None
            found = session.get(IdempotencyKey, (key_id, route, idempotency_key))
            if found is not None:
                return Stored(found.body_sha256, found.status, found.response)
    raise Conflict(
        f"Idempotency-Key {idempotency_key!r} is being claimed concurrently: retry",
        code="idempotency_key_in_progress",
    )


def complete(
    db: Database,
    key_id: str,
    route: str,
    idempotency_key: str,
    *,
    body_sha256: str,
    status: int,
    response: str,
) -> None:
    """Store the answer of the request that claimed the key."""
    with db.session(write=True) as session:
        session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.key_id == key_id,
                IdempotencyKey.route == route,
                IdempotencyKey.idempotency_key == idempotency_key,
            )
            .values(body_sha256=body_sha256, status=status, response=response)
        )


def release(db: Database, key_id: str, route: str, idempotency_key: str, at: int) -> None:
    """Give up the unanswered claim made at ``at`` (the request failed): a retry does
    the work anew. A claim another request took over meanwhile is left alone."""
    with db.session(write=True) as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.key_id == key_id,
                IdempotencyKey.route == route,
                IdempotencyKey.idempotency_key == idempotency_key,
                IdempotencyKey.status.is_(None),
                IdempotencyKey.created_at == at,
            )
        )


def purge(db: Database, before: int) -> int:
    """Delete keys claimed before ``before``; returns how many."""
    with db.session(write=True) as session:
        query = delete(IdempotencyKey).where(IdempotencyKey.created_at < before)
        return len(session.execute(query.returning(IdempotencyKey.created_at)).all())


def check_replay(stored: Stored, body_sha256: str, idempotency_key: str) -> tuple[int, str]:
    """The stored answer for a retry whose body hashes to ``body_sha256`` (pure)."""
    if stored.status is None or stored.response is None:
        raise Conflict(
            f"a request with Idempotency-Key {idempotency_key!r} is still being answered; "
            "retry once it has been",
            code="idempotency_key_in_progress",
        )
    if stored.body_sha256 != body_sha256:
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was already used with a different request "
            "body; use a new key for a new request",
            code="idempotency_key_reused",
        )
    return stored.status, stored.response
