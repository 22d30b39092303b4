"""Database engine and migrations for SQLite (WAL) and PostgreSQL.

Migrating is an explicit step (`offpeak db upgrade`, run by `offpeak serve`, the demo and
the tests): a :class:`Database` only checks that the schema is current and refuses to
open one that is not, naming that command.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from offpeak.errors import SchemaNotCurrent

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook below emit BEGIN, not pysqlite's own deferred logic.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A transaction that reads and then writes must hold the write lock from the start,
    # else WAL mode answers SQLITE_BUSY at the upgrade without waiting for the lock.
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=32,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def head_revision() -> str | None:
    """The newest Alembic revision this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at (None when it was never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# Any fixed number: the key of the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x0FF_9EA4


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision.

    On PostgreSQL an advisory lock held for the transaction serialises concurrent
    upgrades (several replicas starting at once): the second one finds nothing to do.
    """
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade(url: str) -> str:
    """`offpeak db upgrade`: migrate the database at ``url``; returns its dialect."""
    engine = make_engine(url)
    try:
        migrate(engine)
        return engine.dialect.name
    finally:
        engine.dispose()


class Database:
    """An engine plus a session factory; the one handle the rest of the code passes around."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        current, head = schema_revision(self.engine), head_revision()
        if current != head:
            self.engine.dispose()
            where = make_url(url).render_as_string(hide_password=True)
            raise SchemaNotCurrent(
                f"the state database {where} is at schema revision {current or 'none'}, "
                f"this offpeak needs {head}: run `offpeak db upgrade`"
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite admits one writer at a time, and a writer that finds the lock taken
        # sleeps in the busy handler with growing back-off (up to 100 ms) instead of
        # waking when it frees: this process's writers queue on a lock instead.
        self._writers: AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )

    @classmethod
    def migrated(cls, url: str) -> Database:
        """Migrate the database at ``url``, then open it: for tests, benchmarks and tools
        that own their database."""
        upgrade(url)
        return cls(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def writer_turn(self) -> AbstractContextManager[Any]:
        """Held around every write transaction of this process (a no-op off SQLite)."""
        return self._writers

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        ``write=True`` marks a transaction that writes: on SQLite it waits its turn
        among this process's writers and takes the write lock at BEGIN, so a read
        followed by a write cannot fail on the lock upgrade.
        """
        with (
            self._writers if write else nullcontext(),
            self._sessions() as session,
            session.begin(),
        ):
            if write:
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
