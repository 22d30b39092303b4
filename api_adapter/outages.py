"""A dependency that cannot be reached: recognised, answered 503, logged once.

The database and the object store fail in their drivers' own exceptions (SQLAlchemy's
OperationalError around psycopg's, botocore's connection errors, perhaps wrapped in a
StorageError by the store). :func:`unavailable` turns them into the core's
``DatabaseUnavailable`` and ``StorageUnavailable``; :class:`Outages` logs one line when
a dependency goes down and one when it answers again, instead of a traceback per call.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

import psycopg
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from sqlalchemy import event
from sqlalchemy import exc as sa

from offpeak import errors

log = logging.getLogger("offpeak.api")

# What a 503 tells clients to wait before retrying: outages seen so far (a database
# restart, an S3 endpoint failing over) last seconds.
RETRY_AFTER_SECONDS = 5
# SQLAlchemy's, and the drivers' own from code on raw connections (the group committer).
DATABASE_DOWN = (
    sa.OperationalError,
    sa.InterfaceError,
    sa.DisconnectionError,
    sa.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)
# Connection refused, connect and read timeouts, a connection closed mid-answer.
STORAGE_DOWN = (BotoConnectionError, HTTPClientError)


def unavailable(exc: BaseException) -> errors.DependencyUnavailable | None:
    """The outage ``exc`` means, or None when it is not a dependency out of reach."""
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain: StorageError from botocore's error, ...
        if seen is None:
            return None
        if isinstance(seen, errors.DependencyUnavailable):
            return seen
        if isinstance(seen, DATABASE_DOWN) or (
            isinstance(seen, sa.DBAPIError) and seen.connection_invalidated
        ):
            reason = str(getattr(seen, "orig", None) or seen).strip() or type(seen).__name__
            reason = reason.splitlines()[0]
            return errors.DatabaseUnavailable(f"the database is unavailable: {reason}")
        if isinstance(seen, STORAGE_DOWN):
            return errors.StorageUnavailable(f"the object store is unavailable: {seen}")
        seen = seen.__cause__ or seen.__context__
    return None


class Outages:
    """Which dependencies are down, logging each change once.

    An outage ends at the first call that reaches the dependency again: a database
    connection checked out (the pool pings it first), an S3 call that got an answer.
    The hooks are attached at the first outage, so a healthy API pays nothing.
    """

    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._watched: set[int] = set()
        self._lock = threading.Lock()

    def down(self, outage: errors.DependencyUnavailable, services: Any) -> None:
        """Note ``outage``; the first of an outage is logged, the rest are not."""
        name = "object store" if isinstance(outage, errors.StorageUnavailable) else "database"
        with self._lock:
            if name in self._since:
                return
            self._since[name] = time.monotonic()
        log.error("%s; answering 503 %s until it is back", outage.message, outage.code)
        if services is not None:
            self._watch(name, services)

    def up(self, name: str) -> None:
        with self._lock:
            since = self._since.pop(name, None)
        if since is not None:
            log.warning("the %s is available again after %.1f s", name, time.monotonic() - since)

    def is_down(self, name: str) -> bool:
        return name in self._since

    def _watch(self, name: str, services: Any) -> None:
        target = services.db.engine if name == "database" else services.store
        with self._lock:
            if id(target) in self._watched:
                return
            self._watched.add(id(target))
        if name == "database":
            event.listen(target, "engine_connect", lambda *_: self._recovered("database"))
        elif (client := getattr(target, "client", None)) is not None:  # S3: botocore's hooks
            client.meta.events.register(
                "after-call.s3", lambda **_: self._recovered("object store"), unique_id="outages"
            )

    def _recovered(self, name: str) -> None:
        if name in self._since:  # a dict lookup on every connection or S3 call, no more
            self.up(name)
