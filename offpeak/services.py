"""The one wiring: what a process opens from its settings.

Every entry point (the API, a flow run's tasks, the CLI, the demo, benchmarks) builds
its services here, so which database, object store and model registry it talks to is
decided in one place. The API adds its own parts (seal writer, group committer, auth
cache) on top; see ``api_adapter.app``.
"""

from __future__ import annotations

from dataclasses import dataclass

from offpeak.catalog.models import ModelRegistry
from offpeak.config import Settings
from offpeak.state.db import Database
from offpeak.storage import ObjectStore, open_store


@dataclass(frozen=True)
class Services:
    """The state database, the object store and the model registry of one process."""

    settings: Settings
    db: Database
    store: ObjectStore
    registry: ModelRegistry

    def close(self) -> None:
        self.db.dispose()


def services(settings: Settings) -> Services:
    """Open the services ``settings`` name. The database must be migrated already
    (`offpeak db upgrade`): an outdated schema raises :class:`SchemaNotCurrent`."""
    return Services(
        settings,
        Database(settings.database_url),
        open_store(settings),
        ModelRegistry.load(settings.models_path),
    )
