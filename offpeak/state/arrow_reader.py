"""Bulk reads straight into Arrow, for the reads where rows as Python objects would cost
most of the time (publishing a batch: a row object per request, then a frame built from
them, was two thirds of it).

ADBC's drivers (SQLite's C library, PostgreSQL's libpq) build the Arrow columns in C;
the query is the same SQLAlchemy statement, compiled for the driver's parameter style.
Reads only: writes go through :class:`~offpeak.state.db.Database`'s sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi
import adbc_driver_sqlite.dbapi
import pyarrow as pa
from sqlalchemy import ColumnElement, Select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import InstrumentedAttribute

from offpeak.errors import ConfigError, DatabaseUnavailable
from offpeak.state.db import Database

# SQLite's driver infers each column's type from the first rows of a result; a column
# null throughout them would come out as integers, and a text after them would fail.
# Every page is inferred whole (see arrow_pages), and cast to the caller's schema.
_SQLITE_BATCH_ROWS = "adbc.sqlite.query.batch_rows"


def _connect(db: Database) -> Any:
    url = make_url(db.url)
    if db.dialect == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("bulk reads need a SQLite file, not an in-memory database")
        return adbc_driver_sqlite.dbapi.connect(url.database)
    if db.dialect == "postgresql":
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return adbc_driver_postgresql.dbapi.connect(plain)
    raise ConfigError(f"no bulk reader for {db.dialect}")


def _compiled(db: Database, query: Select[Any]) -> tuple[str, tuple[Any, ...]]:
    """``query`` as SQL text in the driver's parameter style, and its parameters."""
    style = "numeric_dollar" if db.dialect == "postgresql" else "qmark"
    dialect = type(db.engine.dialect)(paramstyle=style)  # type: ignore[call-arg]
    compiled = query.compile(dialect=dialect)
    params = compiled.params
    return str(compiled), tuple(params[name] for name in compiled.positiontup or ())


def arrow_pages(
    db: Database,
    query: Select[Any],
    key: ColumnElement[Any] | InstrumentedAttribute[Any],
    schema: pa.Schema,
    page: int,
) -> Iterator[pa.Table]:
    """The rows of ``query`` in order of ``key`` (unique, the schema's first column),
    ``page`` at a time as Arrow tables of ``schema``: a query per page, from the last key
    of the page before, so memory stays flat. All pages come from one transaction.

    The database out of reach (connection refused or lost) is
    :class:`~offpeak.errors.DatabaseUnavailable`, a ConnectionError.
    """
    try:
        yield from _pages(db, query, key, schema, page)
    except adbc_driver_manager.OperationalError as exc:
        raise DatabaseUnavailable(f"the state database: {exc}") from exc


def _pages(
    db: Database,
    query: Select[Any],
    key: ColumnElement[Any] | InstrumentedAttribute[Any],
    schema: pa.Schema,
    page: int,
) -> Iterator[pa.Table]:
    after: Any = None
    # ADBC's DB-API connections do not autocommit: every page reads the same snapshot.
    with closing(_connect(db)) as connection, closing(connection.cursor()) as cursor:
        if db.dialect == "sqlite":
            cursor.adbc_statement.set_options(**{_SQLITE_BATCH_ROWS: str(page)})
        while True:
            paged = query.order_by(key).limit(page)
            if after is not None:
                paged = paged.where(key > after)
            cursor.execute(*_compiled(db, paged))
            table = cursor.fetch_arrow_table()
            if not table.num_rows:
                return
            yield table.cast(schema)
            after = table.column(0)[-1].as_py()
