"""The seal writer against a real S3 server that goes away and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from offpeak.clock import now
from offpeak.ingest.sealing import SealWriter, count_unsealed
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.state.requests import insert_requests, new_request_row
from offpeak.storage import ObjectStore, S3Store
from tests.conftest import new_s3_url
from tests.utils.factories import request_create
from tests.utils.services import RestartableMoto


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def committed_rows(db: Database, key_id: str, count: int) -> list[dict[str, Any]]:
    rows = [new_request_row(key_id, request_create(f"prompt {i}"), now()) for i in range(count)]
    insert_requests(db, rows)
    return rows


@pytest.fixture
def outage() -> Iterator[RestartableMoto]:
    server = RestartableMoto()
    yield server
    server.stop()


@pytest.mark.s3
def test_the_writer_survives_the_store_going_away_and_seals_once_it_is_back(
    db: Database, key: ApiKey, outage: RestartableMoto
) -> None:
    store = S3Store(new_s3_url(), endpoint_url=outage.endpoint, region="us-east-1")
    store.ensure_bucket()
    writer = SealWriter(db, store, interval=0.1, rows=1000, max_backoff=1.0)
    writer.start()
    try:
        writer.accepted(committed_rows(db, key.id, 5))
        assert wait_until(lambda: count_unsealed(db) == 0, 10)
        outage.stop()
        writer.accepted(committed_rows(db, key.id, 7))
        assert wait_until(lambda: writer.status().failures >= 2, 60)
        status = writer.status()
        assert status.alive and status.last_error and "StorageError" in status.last_error
        assert count_unsealed(db) == 7
        outage.start()  # empty, as a restarted moto is: the writer re-creates the bucket
        assert wait_until(lambda: count_unsealed(db) == 0, 60)
        # The rows are marked sealed a moment before the pass records its success.
        assert wait_until(lambda: writer.status().failures == 0, 10)
        status = writer.status()
        assert status.alive and status.failures == 0 and status.last_error is None
        assert status.lag() < 5
        assert sum(1 for _ in store.list("requests/")) >= 1
    finally:
        writer.stop(timeout=30)


def test_a_full_buffer_hands_its_rows_to_a_scan_of_the_database(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    writer = SealWriter(db, store, interval=60, rows=1000, max_buffer=5)
    writer.start()
    try:
        # The first pass (a scan) is done once the writer buffers what it is handed.
        assert wait_until(
            lambda: (writer.accepted(committed_rows(db, key.id, 1)), writer.status().buffered)[1],
            10,
        )
        writer.accepted(committed_rows(db, key.id, 3))
        assert writer.status().buffered == 4
        writer.accepted(committed_rows(db, key.id, 3))  # over 5: dropped, scanned for
        assert writer.status().buffered == 0
        # Only the overflow's wake-up can seal before the 60 s interval.
        assert wait_until(lambda: count_unsealed(db) == 0, 10)
    finally:
        writer.stop(timeout=30)


def test_the_writer_reports_its_lag(db: Database, store: ObjectStore, key: ApiKey) -> None:
    writer = SealWriter(db, store, interval=0.1, rows=1000)
    writer.start()
    try:
        assert wait_until(lambda: writer.status().lag() < 1, 5)
        status = writer.status()
        assert status.alive and status.failures == 0 and status.last_error is None
    finally:
        writer.stop(timeout=30)
    assert not writer.status().alive
