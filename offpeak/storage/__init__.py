"""Object storage: one interface, a local folder and S3 behind it, chosen by URL."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

from offpeak.config import Settings
from offpeak.errors import StorageError
from offpeak.storage.base import ObjectStore
from offpeak.storage.local import LocalStore
from offpeak.storage.s3 import S3Store

__all__ = ["LocalStore", "ObjectStore", "S3Store", "open_store"]
log = logging.getLogger(__name__)


def open_store(settings: Settings) -> ObjectStore:
    """The store named by ``settings.storage_url``."""
    url = settings.storage_url
    if url.startswith("s3://"):
        store = S3Store(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
        try:
            store.check()
        except StorageError as exc:
            # Start anyway: calls fail with StorageError until S3 answers again, and the
            # next check() (readiness, the seal writer's recovery) creates the bucket.
            log.warning("object store %s unreachable at start: %s", store.url, exc)
        return store
    return LocalStore(Path(unquote(urlparse(url).path)))
