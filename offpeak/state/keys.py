"""API keys: created, listed, revoked, authenticated. Only hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from sqlalchemy import select, update

from offpeak.clock import now
from offpeak.errors import AuthenticationError, InsufficientCredits, InvalidInput, NotFound
from offpeak.ids import new_id
from offpeak.state.db import Database
from offpeak.state.models import ApiKey

KEY_PREFIX = "op-"


def hash_key(secret: str) -> str:
    """The stored form of a key: SHA-256 (keys are 256 random bits, no salt needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, name: str, credits_usd: Decimal | float | str) -> tuple[ApiKey, str]:
    """Create a key with a starting balance; returns the row and the secret, shown once."""
    credits = Decimal(str(credits_usd))
    if credits < 0:
        raise InvalidInput("credits must not be negative")
    if not name.strip():
        raise InvalidInput("a key needs a name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id(),
        name=name.strip(),
        key_hash=hash_key(secret),
        prefix=secret[:10],
        credits_usd=credits,
        created_at=now(),
        revoked_at=None,
    )
    with db.session() as session:
        session.add(key)
    return key, secret


def list_keys(db: Database) -> list[ApiKey]:
    with db.session() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(db: Database, key_id: str) -> ApiKey:
    """Revoke a key by id or by its printed prefix; its objects stay."""
    with db.session(write=True) as session:
        key = session.scalar(
            select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
        )
        if key is None:
            raise NotFound(f"no API key {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = now()
        return key


def add_credits(db: Database, key_id: str, usd: Decimal | float | str) -> None:
    with db.session() as session:
        result = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(credits_usd=ApiKey.credits_usd + Decimal(str(usd)))
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no API key {key_id!r}")


def authenticate(db: Database, secret: str | None) -> ApiKey:
    """The active key for ``secret``, or :class:`AuthenticationError`."""
    if not secret:
        raise AuthenticationError("missing API key: send it in the X-API-Key header")
    with db.session() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    if key is None:
        raise AuthenticationError("invalid API key")
    if key.revoked_at is not None:
        raise AuthenticationError("this API key has been revoked")
    return key


def require_balance(key: ApiKey, minimum_usd: float) -> None:
    """Refuse new work when the key's balance is under the minimum."""
    if float(key.credits_usd) < minimum_usd:
        raise InsufficientCredits(
            f"credit balance ${key.credits_usd:.2f} is below the ${minimum_usd:.2f} minimum "
            "needed to process requests; add credits to this key"
        )
