"""What routes depend on: the running services and the authenticated API key."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from offpeak.config import Settings
from offpeak.ingest import SealWriter
from offpeak.registry import ModelRegistry
from offpeak.state import keys
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

    def authenticate(self, db: Database, secret: str | None) -> ApiKey:
        if secret:
            with self._lock:
                hit = self._entries.get(secret)
            if hit and hit[0] > time.monotonic():
                return hit[1]
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
    auth: AuthCache = field(default_factory=AuthCache)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def current_key(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header(description="Your API key.")] = None,
) -> ApiKey:
    """The API key sending this call (401 when missing, unknown or revoked)."""
    return services.auth.authenticate(services.db, x_api_key)


KeyDep = Annotated[ApiKey, Depends(current_key)]
