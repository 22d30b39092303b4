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

from offpeak.errors import OffpeakError
from offpeak.state.db import Database
from offpeak.state.inserter import RequestInserter

log = logging.getLogger(__name__)

Row = dict[str, Any]
Also = Callable[[Any], None]  # a step on the DB-API cursor in the row's transaction


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
        self._pending: list[tuple[Row, Also | None, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, row: Row, also: Also | None = None) -> None:
        """Queue ``row`` and wait until it is committed (or its insert failed); ``also``
        runs in the same transaction, and fails the row when it raises."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, also, future))
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
                rows = [(row, also) for row, also, _ in batch]
                errors = await loop.run_in_executor(self._thread, self._commit, rows)
                for (_, _, future), error in zip(batch, errors, strict=True):
                    if future.cancelled():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._flusher = None

    def _commit(self, rows: list[tuple[Row, Also | None]]) -> list[BaseException | None]:
        """Commit ``rows`` together; if that fails, one by one so only bad rows fail."""
        steps = [also for _, also in rows if also is not None]

        def also_all(cursor: Any) -> None:
            for step in steps:
                step(cursor)

        try:
            self._inserter.insert([row for row, _ in rows], also_all if steps else None)
            errors: list[BaseException | None] = [None] * len(rows)
        except Exception:  # isolate the failing rows
            errors = [self._commit_one(row, also) for row, also in rows]
        committed = [row for (row, _), error in zip(rows, errors, strict=True) if error is None]
        if committed and self.on_commit:
            self.on_commit(committed)
        return errors

    def _commit_one(self, row: Row, also: Also | None) -> BaseException | None:
        try:
            self._inserter.insert([row], also)
        except OffpeakError as exc:  # the caller's own refusal (a lost idempotency claim)
            return exc
        except Exception as exc:  # handed to the waiting caller
            # A database out of reach fails every row alike: the caller reports that
            # (the API logs once per outage), not a line per row here.
            if not isinstance(exc, self._inserter.db.engine.dialect.loaded_dbapi.OperationalError):
                log.error("could not commit request %s: %s", row.get("id"), exc)
            return exc
        return None
