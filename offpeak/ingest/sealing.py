"""Sealing: move accepted requests from the state database into Parquet segments."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from offpeak.clock import now
from offpeak.errors import OffpeakError
from offpeak.ingest.segments import encode_segment, segment_key
from offpeak.state.db import Database
from offpeak.state.requests import UnsealedRow, mark_sealed, unsealed_requests
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)
MARK_CHUNK = 1000


@dataclass(frozen=True)
class SealResult:
    segment: str
    rows: int


def seal_rows(db: Database, store: ObjectStore, rows: Sequence[UnsealedRow]) -> SealResult:
    """Seal ``rows`` into one new segment, then point those still unsealed at it.

    The segment is written (create-if-absent) before the rows point at it, so a crash
    in between leaves the rows unsealed and a later seal writes them again; the
    database's pointer decides which copy counts.
    """
    key = segment_key(now())
    store.create(key, encode_segment(rows))
    ids = [r.id for r in rows]
    sealed = 0
    # Short transactions: the API's inserts wait for the write lock meanwhile.
    for start in range(0, len(ids), MARK_CHUNK):
        with db.session(write=True) as session:
            sealed += mark_sealed(session, ids[start : start + MARK_CHUNK], key)
    return SealResult(key, sealed)


def seal_once(db: Database, store: ObjectStore, limit: int) -> SealResult | None:
    """Seal up to ``limit`` of the oldest unsealed requests found in the database."""
    if db.dialect == "postgresql":
        # Hold the row locks while writing, so concurrent sealers skip these rows.
        with db.session() as session:
            rows = unsealed_requests(session, limit, lock=True)
            if not rows:
                return None
            key = segment_key(now())
            store.create(key, encode_segment(rows))
            sealed = mark_sealed(session, [r.id for r in rows], key)
        return SealResult(key, sealed)
    with db.session() as session:
        rows = unsealed_requests(session, limit)
    return seal_rows(db, store, rows) if rows else None


def seal_all(db: Database, store: ObjectStore, limit: int) -> list[SealResult]:
    """Seal until nothing is left unsealed (start-up recovery, scheduler ticks)."""
    results = []
    while (result := seal_once(db, store, limit)) is not None:
        results.append(result)
    return results


def _chunks(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _unsealed(row: dict[str, Any]) -> UnsealedRow:
    return UnsealedRow(
        row["id"],
        row["key_id"],
        row["model"],
        row["created_at"],
        row["expires_at"],
        row["body"],
        row["meta"],
    )


class SealWriter:
    """Background thread that seals accepted requests every few seconds or N rows.

    Rows committed by this process are handed over as they commit and sealed from
    memory, so the database is only written, never re-read, on the hot path. Its first
    pass, and any pass after a failure, scans the database instead: that seals what a
    crashed process (or a failed seal) left behind.
    """

    def __init__(self, db: Database, store: ObjectStore, *, interval: float, rows: int) -> None:
        self.db, self.store, self.interval, self.rows = db, store, interval, rows
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="offpeak-seal-writer", daemon=True)
        self.sealed_rows = 0

    def start(self) -> None:
        self._thread.start()

    def accepted(self, rows: Sequence[dict[str, Any]]) -> None:
        """Hand over rows just committed; seals early once N are waiting."""
        with self._lock:
            self._buffer.extend(rows)
            if len(self._buffer) >= self.rows:
                self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after one last seal, so a clean shutdown leaves nothing unsealed."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        scan = True
        while True:
            # Clear before reading the stop flag, so a stop() in between is not lost.
            self._wake.clear()
            stopping = self._stopping.is_set()
            with self._lock:
                buffered, self._buffer = self._buffer, []
            # The last pass scans too: a clean shutdown leaves nothing unsealed.
            scan = scan or stopping
            try:
                if scan:  # the buffered rows are committed, so the scan finds them too
                    sealed = sum(r.rows for r in seal_all(self.db, self.store, self.rows))
                    scan = False
                else:
                    sealed = sum(
                        seal_rows(self.db, self.store, [_unsealed(r) for r in chunk]).rows
                        for chunk in _chunks(buffered, self.rows)
                    )
                self.sealed_rows += sealed
            except (OffpeakError, SQLAlchemyError) as exc:
                # The rows stay unsealed in the database; the next pass scans for them.
                log.error("sealing failed, will retry: %s", exc)
                scan = True
            if stopping:
                return
            self._wake.wait(self.interval)
