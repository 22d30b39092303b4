"""What routes depend on: the running services and the authenticated API key."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings
from offpeak.ingest.sealing import SealWriter
from offpeak.state import keys
from offpeak.state.committer import GroupCommitter
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.storage import ObjectStore

# A key's row is re-read at most this often: revocation and balance changes take
# effect within this many seconds, and the hot path skips a query per request.
AUTH_CACHE_SECONDS = 2.0


@dataclass
class AuthCache:
    ttl: float = AUTH_CACHE_SECONDS
    _entries: dict[str, tuple[float, ApiKey]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, secret: str | None) -> ApiKey | None:
        """The key for ``secret`` if it authenticated less than ``ttl`` seconds ago."""
        if not secret:
            return None
        with self._lock:
            hit = self._entries.get(secret)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def authenticate(self, db: Database, secret: str | None) -> ApiKey:
        if (key := self.cached(secret)) is not None:
            return key
        key = keys.authenticate(db, secret)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[secret] = (time.monotonic() + self.ttl, key)  # type: ignore[index]
        return key


@dataclass
class Services:
    """Everything the API process holds open, built once at start-up."""

    settings: Settings
    db: Database
    store: ObjectStore
    registry: ModelRegistry
    writer: SealWriter
    committer: GroupCommitter
    auth: AuthCache = field(default_factory=AuthCache)


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
    if (key := services.auth.cached(secret)) is not None:
        return key
    return await run_in_threadpool(services.auth.authenticate, services.db, secret)


async def current_key(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Depends(api_key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The API key sending this call (X-API-Key or a bearer token)."""
    return await authenticate(services, x_api_key or (token.credentials if token else None))


KeyDep = Annotated[ApiKey, Depends(current_key)]
