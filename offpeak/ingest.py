"""Sealing: move accepted requests from the state database into Parquet segments."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from offpeak.clock import now
from offpeak.errors import OffpeakError
from offpeak.segments import encode_segment, segment_key
from offpeak.state.db import Database
from offpeak.state.requests import mark_sealed, unsealed_requests
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealResult:
    segment: str
    rows: int


def seal_once(db: Database, store: ObjectStore, limit: int) -> SealResult | None:
    """Seal up to ``limit`` of the oldest unsealed requests into one new segment.

    The segment is written (create-if-absent) before the rows point at it, so a crash
    in between leaves the rows unsealed and a later seal writes them again; the
    database's pointer decides which copy counts.
    """
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
    if not rows:
        return None
    key = segment_key(now())
    store.create(key, encode_segment(rows))
    with db.session() as session:
        sealed = mark_sealed(session, [r.id for r in rows], key)
    return SealResult(key, sealed)


def seal_all(db: Database, store: ObjectStore, limit: int) -> list[SealResult]:
    """Seal until nothing is left unsealed (start-up recovery, scheduler ticks)."""
    results = []
    while (result := seal_once(db, store, limit)) is not None:
        results.append(result)
    return results


class SealWriter:
    """Background thread that seals accepted requests every few seconds or N rows.

    Its first pass seals whatever a crashed process left unsealed.
    """

    def __init__(self, db: Database, store: ObjectStore, *, interval: float, rows: int) -> None:
        self.db, self.store, self.interval, self.rows = db, store, interval, rows
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="offpeak-seal-writer", daemon=True)
        self.sealed_rows = 0

    def start(self) -> None:
        self._thread.start()

    def accepted(self, count: int = 1) -> None:
        """Tell the writer that ``count`` rows were committed; seals early at N rows."""
        with self._lock:
            self._accepted += count
            if self._accepted >= self.rows:
                self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after one last seal, so a clean shutdown leaves nothing unsealed."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            # Clear before reading the stop flag, so a stop() in between is not lost.
            self._wake.clear()
            stopping = self._stopping.is_set()
            with self._lock:
                self._accepted = 0
            try:
                self.sealed_rows += sum(r.rows for r in seal_all(self.db, self.store, self.rows))
            except OffpeakError as exc:
                log.error("sealing failed, will retry: %s", exc)
            except SQLAlchemyError as exc:
                log.error("sealing failed on the database, will retry: %s", exc)
            if stopping:
                return
            self._wake.wait(self.interval)
