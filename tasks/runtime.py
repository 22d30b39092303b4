"""What the tasks of one flow-run process share: settings, database, store, registry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings, get_settings
from offpeak.state.db import Database
from offpeak.storage import ObjectStore, open_store


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    store: ObjectStore
    registry: ModelRegistry


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Opened once per process, on first use."""
    settings = get_settings()
    return Runtime(
        settings,
        Database(settings.database_url or ""),
        open_store(settings),
        ModelRegistry.load(settings.models_path),
    )
