"""Idempotency keys: the first answer to a create, kept for a client that retries.

A create sent with an ``Idempotency-Key`` first *claims* the key (an insert that the
primary key lets only one caller win), then does its work, then *completes* the claim
with its answer. A retry finds the claim: it gets the stored answer when its body is
the same, a :class:`Conflict` when it differs or while the first is still running.
Keys are per API key and per route; answers expire after ``ttl`` seconds.

An unanswered claim is held under a short *lease* that the request renews while it
works (:func:`renew`): a claim whose lease ran out belongs to a process that died (or
stalled) mid-request, and a retry takes it over at once instead of waiting out a long
fixed delay. Each claim carries a random ``owner`` token and every later write of the
claim (renew, complete, release) names it, so a request whose claim was taken over can
neither store its answer nor drop the new owner's claim. Where the work is one insert
(a single request), the answer is stored in that insert's own transaction
(:func:`answer_on`): then a process killed at any instant leaves either both or
neither, and a retry can never create the request a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite

from offpeak.errors import Conflict, IdempotencyKeyInProgress
from offpeak.state.db import Database
from offpeak.state.models import IdempotencyKey

TTL_SECONDS = 24 * 3600
# The default lease (offpeak.config: idempotency_lease_seconds); long enough that two
# renewals (every third of it) may fail to a database blip before it runs out.
LEASE_SECONDS = 30
# Claims made before leases existed carry none: they count as leased this long.
LEGACY_LEASE_SECONDS = 15 * 60
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    """What an earlier request with the same key left: its answer once it has one."""

    body_sha256: str
    status: int | None  # None while that request is still being answered
    response: str | None
    lease_until: int | None = None  # while unanswered: when its lease runs out


@dataclass(frozen=True)
class Claim:
    """A key this request holds: it does the work, renews the lease, then completes."""

    key_id: str
    route: str
    idempotency_key: str
    owner: str  # random per claim

    def pk_values(self) -> tuple[str, str, str]:
        return self.key_id, self.route, self.idempotency_key

    def _pk(self) -> tuple[Any, ...]:
        return (
            IdempotencyKey.key_id == self.key_id,
            IdempotencyKey.route == self.route,
            IdempotencyKey.idempotency_key == self.idempotency_key,
        )

    def _held(self) -> tuple[Any, ...]:
        return (*self._pk(), IdempotencyKey.owner == self.owner, IdempotencyKey.status.is_(None))


def _insert_claim(db: Database, row: dict[str, Any]) -> bool:
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


def _lease_end() -> Any:
    return func.coalesce(
        IdempotencyKey.lease_until, IdempotencyKey.created_at + LEGACY_LEASE_SECONDS
    )


def claim(
    db: Database,
    key_id: str,
    route: str,
    idempotency_key: str,
    at: int,
    *,
    ttl: int = TTL_SECONDS,
    lease: int = LEASE_SECONDS,
) -> Claim | Stored:
    """Claim ``idempotency_key`` for a request arriving at ``at``, leased for ``lease``
    seconds.

    A :class:`Claim`: the caller owns the key and does the work, renewing the lease, then
    calls :func:`complete` (or :func:`release` when it failed). Otherwise what the
    earlier request left.
    """
    owned = Claim(key_id, route, idempotency_key, uuid.uuid4().hex)
    row: dict[str, Any] = {
        "key_id": key_id,
        "route": route,
        "idempotency_key": idempotency_key,
        "body_sha256": "",
        "status": None,
        "response": None,
        "created_at": at,
        "owner": owned.owner,
        "lease_until": at + lease,
    }
    for _ in range(3):  # a claim can vanish between two steps (released, purged)
        if _insert_claim(db, row):
            return owned
        # Taken: an expired answer, or a claim whose lease ran out, is taken over in one
        # update; it re-checks the lease under the row's lock, so of two retries racing
        # for a dead claim only one wins, and a renewal committed first keeps it alive.
        stale = or_(
            IdempotencyKey.created_at < at - ttl,
            and_(IdempotencyKey.status.is_(None), _lease_end() < at),
        )
        with db.session(write=True) as session:
            take = update(IdempotencyKey).where(*owned._pk(), stale).values(**row)
            if session.execute(take.returning(IdempotencyKey.created_at)).first() is not None:
                return owned
            found = session.get(IdempotencyKey, (key_id, route, idempotency_key))
            if found is not None:
                until = found.lease_until or found.created_at + LEGACY_LEASE_SECONDS
                return Stored(found.body_sha256, found.status, found.response, until)
    raise IdempotencyKeyInProgress(
        f"Idempotency-Key {idempotency_key!r} is being claimed concurrently: retry",
        retry_after=1,
    )


def renew(db: Database, held: Claim, at: int, *, lease: int = LEASE_SECONDS) -> bool:
    """Extend ``held``'s lease to ``at + lease``; False when it is no longer held (taken
    over after the lease ran out, or already answered)."""
    with db.session(write=True) as session:
        query = update(IdempotencyKey).where(*held._held()).values(lease_until=at + lease)
        return session.execute(query.returning(IdempotencyKey.created_at)).first() is not None


def complete(db: Database, held: Claim, *, body_sha256: str, status: int, response: str) -> bool:
    """Store the answer of the request that holds ``held``; False (nothing stored) when
    another request took the key over meanwhile."""
    with db.session(write=True) as session:
        query = (
            update(IdempotencyKey)
            .where(*held._held())
            .values(body_sha256=body_sha256, status=status, response=response, lease_until=None)
        )
        return session.execute(query.returning(IdempotencyKey.created_at)).first() is not None


def answer_on(
    dialect: str, held: Claim, *, body_sha256: str, status: int, response: str
) -> Callable[[Any], None]:
    """A step that stores ``held``'s answer through a DB-API cursor, inside the caller's
    transaction (the one that inserts what the request creates). It raises
    :class:`IdempotencyKeyInProgress` when the claim was taken over, so that the
    transaction rolls back and the request is not created twice."""
    mark = "%s" if dialect == "postgresql" else "?"
    sql = (
        f"UPDATE {IdempotencyKey.__tablename__} "
        f"SET body_sha256 = {mark}, status = {mark}, response = {mark}, lease_until = NULL "
        f"WHERE key_id = {mark} AND route = {mark} AND idempotency_key = {mark} "
        f"AND owner = {mark} AND status IS NULL"
    )
    params = (body_sha256, status, response, *held.pk_values(), held.owner)

    def store(cursor: Any) -> None:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise IdempotencyKeyInProgress(
                f"Idempotency-Key {held.idempotency_key!r} was taken over by a retry while "
                "this request ran long; nothing was created by this one",
                retry_after=1,
            )

    return store


def release(db: Database, held: Claim) -> None:
    """Give up the unanswered claim (the request failed): a retry does the work anew. A
    claim another request took over meanwhile is left alone."""
    with db.session(write=True) as session:
        session.execute(delete(IdempotencyKey).where(*held._held()))


def purge(db: Database, before: int) -> int:
    """Delete keys claimed before ``before``; returns how many."""
    with db.session(write=True) as session:
        query = delete(IdempotencyKey).where(IdempotencyKey.created_at < before)
        return len(session.execute(query.returning(IdempotencyKey.created_at)).all())


def check_replay(
    stored: Stored, body_sha256: str, idempotency_key: str, at: int
) -> tuple[int, str]:
    """The stored answer for a retry at ``at`` whose body hashes to ``body_sha256`` (pure)."""
    if stored.status is None or stored.response is None:
        raise IdempotencyKeyInProgress(
            f"a request with Idempotency-Key {idempotency_key!r} is still being answered; "
            "retry once it has been",
            # Answered by then, or its lease has run out and the retry takes over.
            retry_after=(stored.lease_until or at) - at + 1,
        )
    if stored.body_sha256 != body_sha256:
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was already used with a different request "
            "body; use a new key for a new request",
            code="idempotency_key_reused",
        )
    return stored.status, stored.response
