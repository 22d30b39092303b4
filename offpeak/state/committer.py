"""Group commit: many concurrent submissions share one transaction.

`POST /v1/requests` must not answer before its row is committed. The callers queue
their rows and await; one flusher commits everything queued so far in one transaction
and wakes them all, then loops while more arrived meanwhile. Latency stays about one
commit; throughput grows with concurrency.

The flush runs in the committer's own thread, never on the event loop: a commit can
wait (for SQLite's write lock, held by the seal thread or another process, or for a
networked database), and the loop must keep serving meanwhile. One thread, so its
connection and prepared statement stay warm and commits never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from offpeak.state.db import Database
from offpeak.state.inserter import RequestInserter

log = logging.getLogger(__name__)

Row = dict[str, Any]


class GroupCommitter:
    """Inserts accepted requests in shared transactions; `insert` returns once committed."""

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[list[Row]], None] | None = None,
    ) -> None:
        self.on_commit = on_commit
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="offpeak-commit")
        self._inserter = RequestInserter(db)
        self._pending: list[tuple[Row, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, row: Row) -> None:
        """Queue ``row`` and wait until it is committed (or its insert failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def close(self) -> None:
        """Wait for queued rows to be committed, then release the connection."""
        while self._flusher is not None:
            await self._flusher
        await asyncio.get_running_loop().run_in_executor(self._thread, self._inserter.close)
        self._thread.shutdown()

    async def _flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self._pending:
                batch, self._pending = self._pending, []
                rows = [row for row, _ in batch]
                errors = await loop.run_in_executor(self._thread, self._commit, rows)
                for (_, future), error in zip(batch, errors, strict=True):
                    if future.cancelled():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._flusher = None

    def _commit(self, rows: list[Row]) -> list[BaseException | None]:
        """Commit ``rows`` together; if that fails, one by one so only bad rows fail."""
        try:
            self._inserter.insert(rows)
            errors: list[BaseException | None] = [None] * len(rows)
        except Exception:  # isolate the failing rows
            errors = [self._commit_one(row) for row in rows]
        committed = [row for row, error in zip(rows, errors, strict=True) if error is None]
        if committed and self.on_commit:
            self.on_commit(committed)
        return errors

    def _commit_one(self, row: Row) -> BaseException | None:
        try:
            self._inserter.insert([row])
        except Exception as exc:  # handed to the waiting caller
            # A database out of reach fails every row alike: the caller reports that
            # (the API logs once per outage), not a line per row here.
            if not isinstance(exc, self._inserter.db.engine.dialect.loaded_dbapi.OperationalError):
                log.error("could not commit request %s: %s", row.get("id"), exc)
            return exc
        return None
