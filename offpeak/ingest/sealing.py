"""Sealing: move accepted requests from the state database into Parquet segments."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from offpeak.clock import now
from offpeak.errors import OffpeakError
from offpeak.ingest.segments import encode_segment, segment_key
from offpeak.state.db import Database
from offpeak.state.models import Request
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


def count_unsealed(db: Database) -> int:
    """Accepted requests not yet in a segment (the writer's backlog, any process's)."""
    with db.session() as session:
        query = select(func.count()).select_from(Request).where(Request.segment.is_(None))
        return int(session.execute(query).scalar_one())


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


# Errors of the database and the store: logged in one line. Anything else is a bug,
# logged with its traceback, and retried all the same: sealing must not stop.
_EXPECTED = (OffpeakError, SQLAlchemyError, OSError)


@dataclass(frozen=True)
class SealerStatus:
    """What the seal writer reports about itself (``/readyz``)."""

    alive: bool  # the thread runs
    buffered: int  # rows handed over, waiting in memory
    sealed_rows: int  # rows this writer sealed since it started
    last_success: float  # unix time of its last pass that succeeded (its start before)
    last_error: str | None  # the error of the last pass, if it failed
    failures: int  # passes failed in a row

    def lag(self, at: float | None = None) -> float:
        """Seconds since the last successful pass."""
        return max(0.0, (time.time() if at is None else at) - self.last_success)


class SealWriter:
    """Background thread that seals accepted requests every few seconds or N rows.

    Rows committed by this process are handed over as they commit and sealed from
    memory, so the database is only written, never re-read, on the hot path. Its first
    pass, any pass after a failure and any pass after its buffer overflowed scan the
    database instead: that seals what a crashed process, a failed seal or a full buffer
    left behind. Every row it is handed is already committed, so dropping it from
    memory loses nothing: a scan finds it.

    A failed pass is retried with exponential back-off (capped at ``max_backoff``)
    until it succeeds; the thread ends only on :meth:`stop`.
    """

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        interval: float,
        rows: int,
        max_buffer: int | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.db, self.store, self.interval, self.rows = db, store, interval, rows
        self.max_buffer = max_buffer or 5 * rows
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._buffer: list[dict[str, Any]] = []
        self._scan = True  # the next pass scans the database (guarded by _lock)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="offpeak-seal-writer", daemon=True)
        self.sealed_rows = 0
        self._last_success = time.time()
        self._last_error: str | None = None
        self._failures = 0
        self._retrying = Retrying(
            # 0.25 s, 0.5 s, 1 s ... up to max_backoff, plus jitter so replicas spread out.
            wait=wait_exponential(multiplier=0.25, max=max_backoff) + wait_random(0, 0.5),
            # Retry for ever, but not past a stop: the rows stay in the database.
            stop=lambda _state: self._stopping.is_set(),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )

    def start(self) -> None:
        self._thread.start()

    def accepted(self, rows: Sequence[dict[str, Any]]) -> None:
        """Hand over rows just committed; seals early once N are waiting."""
        with self._lock:
            if self._scan:
                return  # the coming scan finds them in the database
            if len(self._buffer) + len(rows) > self.max_buffer:
                self._buffer, self._scan = [], True
                self._wake.set()
                return
            self._buffer.extend(rows)
            if len(self._buffer) >= self.rows:
                self._wake.set()

    def status(self) -> SealerStatus:
        with self._lock:
            buffered = len(self._buffer)
        return SealerStatus(
            alive=self._thread.is_alive(),
            buffered=buffered,
            sealed_rows=self.sealed_rows,
            last_success=self._last_success,
            last_error=self._last_error,
            failures=self._failures,
        )

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
            try:
                self._retrying(self._pass)
            except BaseException as exc:  # only once stopping: the rows stay unsealed
                log.error("sealing stopped with rows left unsealed in the database: %s", exc)
                return
            if stopping:
                return
            self._wake.wait(self.interval)

    def _pass(self) -> None:
        """Seal what is buffered, or scan the database after a failure or an overflow."""
        with self._lock:
            buffered, self._buffer = self._buffer, []
            # The last pass scans too: a clean shutdown leaves nothing unsealed.
            scan, self._scan = self._scan or self._stopping.is_set(), False
        try:
            if scan:  # the buffered rows are committed, so the scan finds them too
                if self._failures:
                    self.store.check()  # e.g. re-creates a development server's bucket
                sealed = sum(r.rows for r in seal_all(self.db, self.store, self.rows))
            else:
                sealed = sum(
                    seal_rows(self.db, self.store, [_unsealed(r) for r in chunk]).rows
                    for chunk in _chunks(buffered, self.rows)
                )
        except BaseException:
            with self._lock:  # the rows stay unsealed in the database; scan for them
                self._buffer, self._scan = [], True
            raise
        self.sealed_rows += sealed
        if self._failures:
            log.warning(
                "sealing recovered after %d failed attempts (%.0f s)",
                self._failures,
                time.time() - self._last_success,
            )
        self._last_success, self._last_error, self._failures = time.time(), None, 0

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a stop() cuts the back-off short

    def _failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(exc, _EXPECTED):
            # One line per attempt; the back-off keeps them few during a long outage.
            log.warning(
                "sealing failed (attempt %d), retrying in %.1f s: %s",
                self._failures,
                wait,
                self._last_error,
            )
        else:
            log.error("sealing failed unexpectedly, retrying in %.1f s", wait, exc_info=exc)
