"""What routes depend on: the running services and the authenticated API key."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Annotated, Any

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, object_session
from starlette.concurrency import run_in_threadpool

from api_adapter.nudge import SchedulerNudge
from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings
from offpeak.ingest.sealing import SealWriter
from offpeak.logs import bind
from offpeak.state import keys
from offpeak.state.committer import GroupCommitter
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.storage import ObjectStore

AUTH_CACHE_ENTRIES = 10_000  # keys remembered at once; the least recently used go first


class AuthCache:
    """Keys that authenticated in the last ``ttl`` seconds, by secret, so the hot path
    skips a query per call. Another process's revocation (another replica, `offpeak
    keys revoke`) takes effect within ``ttl``; one committed in this process, at once.
    """

    def __init__(self, ttl: float) -> None:
        # cachetools caches are not thread-safe: the event loop reads, the thread pool
        # writes. No TTL means no cache (cachetools would keep entries already expired).
        self._keys: TTLCache[str, ApiKey] | None = (
            TTLCache(AUTH_CACHE_ENTRIES, ttl) if ttl > 0 else None
        )
        self._lock = threading.Lock()
        self._revocations = 0  # bumped by every revocation: see authenticate()
        _caches.add(self)

    def cached(self, secret: str | None) -> ApiKey | None:
        """The key for ``secret`` if it authenticated less than ``ttl`` seconds ago."""
        if not secret or self._keys is None:
            return None
        with self._lock:
            return self._keys.get(secret)

    def authenticate(self, db: Database, secret: str | None) -> ApiKey:
        if (key := self.cached(secret)) is not None:
            return key
        with self._lock:
            seen = self._revocations
        key = keys.authenticate(db, secret)
        with self._lock:
            # A revocation committed while we read may have found nothing to drop yet:
            # what we read is then possibly stale and must not be remembered.
            if secret and self._keys is not None and seen == self._revocations:
                self._keys[secret] = key
        return key

    def forget(self, key_ids: set[str]) -> None:
        """Drop the cached entries of these keys: they were just revoked."""
        with self._lock:
            self._revocations += 1
            if self._keys is not None:
                for secret in [s for s, key in self._keys.items() if key.id in key_ids]:
                    del self._keys[secret]


# Every AuthCache of this process, told of each revocation this process commits,
# whichever code path revokes (`keys.revoke_key` today, an admin route tomorrow).
_caches: weakref.WeakSet[AuthCache] = weakref.WeakSet()
_REVOKED = "offpeak.revoked_keys"  # Session.info entry: keys revoked in this transaction


@event.listens_for(ApiKey, "after_update")
def _note_revocation(_mapper: Any, _connection: Any, key: ApiKey) -> None:
    revoked = key.revoked_at is not None and inspect(key).attrs.revoked_at.history.added
    if revoked and (session := object_session(key)) is not None:
        session.info.setdefault(_REVOKED, set()).add(key.id)


@event.listens_for(Session, "after_commit")
def _forget_revoked(session: Session) -> None:
    # After the commit, not at the flush: a cache miss in between would read the
    # uncommitted (still active) row and remember it again.
    if revoked := session.info.pop(_REVOKED, None):
        for cache in list(_caches):
            cache.forget(revoked)


@dataclass
class Services:
    """Everything the API process holds open, built once at start-up."""

    settings: Settings
    db: Database
    store: ObjectStore
    registry: ModelRegistry
    writer: SealWriter
    committer: GroupCommitter
    auth: AuthCache = field(init=False)
    nudge: SchedulerNudge = field(init=False)  # call it when a batch is submitted

    def __post_init__(self) -> None:
        self.auth = AuthCache(self.settings.auth_cache_seconds)
        self.nudge = SchedulerNudge(self.settings.scheduler_deployment)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Your API key.")
# The OpenAI SDK sends the same keys as `Authorization: Bearer <key>`; either works anywhere.
bearer = HTTPBearer(auto_error=False, description="Your API key, as a bearer token.")
# For routes that read the key themselves: the same schemes in their OpenAPI entry.
API_KEY_SECURITY: dict[str, Any] = {
    "security": [{api_key_header.scheme_name: []}, {bearer.scheme_name: []}]
}


def secret_of(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key sent in X-API-Key, else as an `Authorization: Bearer` token."""
    if x_api_key:
        return x_api_key
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


async def authenticate(services: Services, secret: str | None) -> ApiKey:
    """The API key for ``secret`` (401 when missing, unknown or revoked).

    A cache hit costs no trip through the thread pool; a miss reads the database there.
    """
    key = services.auth.cached(secret)
    if key is None:
        key = await run_in_threadpool(services.auth.authenticate, services.db, secret)
    bind(key_id=key.id)  # on this call's log lines from here on
    return key


async def current_key(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Depends(api_key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The API key sending this call (X-API-Key or a bearer token)."""
    return await authenticate(services, x_api_key or (token.credentials if token else None))


KeyDep = Annotated[ApiKey, Depends(current_key)]
