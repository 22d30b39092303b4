"""Object storage: one interface, a local folder and S3 behind it, chosen by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from offpeak.config import Settings
from offpeak.storage.base import ObjectStore
from offpeak.storage.local import LocalStore
from offpeak.storage.s3 import S3Store

__all__ = ["LocalStore", "ObjectStore", "S3Store", "open_store"]


def open_store(settings: Settings) -> ObjectStore:
    """The store named by ``settings.storage_url``."""
    url = settings.storage_url
    if url.startswith("s3://"):
        store = S3Store(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
        store.ensure_bucket()
        return store
    return LocalStore(Path(unquote(urlparse(url).path)))
