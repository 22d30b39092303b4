"""The tasks' runtime on a fresh data folder: SQLite and a local store, migrated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from offpeak.config import Settings, get_settings
from offpeak.state.db import upgrade
from tasks.runtime import runtime


@pytest.fixture
def task_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """``task_env(OFFPEAK_X="y")``: the settings the tasks' runtime reads, with these set."""

    def settings(**env: str) -> Settings:
        monkeypatch.setenv("OFFPEAK_DATA_DIR", str(tmp_path / "data"))
        for name in ("OFFPEAK_DATABASE_URL", "OFFPEAK_STORAGE_URL", "OFFPEAK_CARBON_PROVIDER"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        runtime.cache_clear()
        upgrade(get_settings().database_url)
        return get_settings()

    yield settings
    if runtime.cache_info().currsize:
        runtime().db.dispose()
    runtime.cache_clear()
    get_settings.cache_clear()
