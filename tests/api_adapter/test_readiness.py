"""`/readyz`'s probes are time-bounded: a dependency that hangs counts as down, fast."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_adapter import readiness
from api_adapter.app import open_services
from offpeak.config import load_settings
from offpeak.state.db import upgrade


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_hanging_object_store_is_reported_down_within_the_probe_timeout(
    tmp_path: Path, silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readiness, "PROBE_SECONDS", 0.5)
    settings = load_settings(
        data_dir=tmp_path, storage_url="s3://hangs/objects", s3_endpoint_url=silent_endpoint
    )
    upgrade(settings.database_url)
    services = open_services(settings)  # warns that the store is unreachable, and starts
    try:
        started = time.monotonic()
        report = asyncio.run(readiness.readiness(services))
        took = time.monotonic() - started
    finally:
        services.db.dispose()
    assert report.status == "unavailable"
    assert "storage" in report.down and "database" not in report.down
    assert report.storage.error == "Timeout"
    assert took < 2  # the store's own read timeout is 5 s: the probe did not wait for it
