"""The hot insert of accepted requests: one DB-API connection, one prepared statement.

`POST /v1/requests` commits a row per call. Going through a pooled SQLAlchemy
connection costs about 0.2 ms per transaction here, more than the insert itself, so
the committer keeps one raw connection and executes the compiled INSERT directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, inspect

from offpeak.state.db import Database
from offpeak.state.models import Request

_TABLE = cast(Table, Request.__table__)
# Rows use the mapped attribute names (`meta`); the statement takes column keys (`metadata`).
_ATTRIBUTE = {attr.columns[0].key: attr.key for attr in inspect(Request).column_attrs}
_JSON_COLUMNS = {"metadata"}


class RequestInserter:
    """Inserts request rows in one transaction per call, on its own connection.

    Not thread-safe: one owner (the group committer) calls it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        compiled = insert(_TABLE).compile(dialect=db.engine.dialect)
        self._sql = compiled.string
        self._positions = compiled.positiontup  # None for named paramstyles
        self._connection: Any = None

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit ``rows``; when this returns they are durable."""
        if not rows:
            return
        connection = self._connection or self._connect()
        with self.db.writer_turn():
            self._execute(connection, rows)

    def _execute(self, connection: Any, rows: Sequence[dict[str, Any]]) -> None:
        try:
            cursor = connection.cursor()
            if self.db.dialect == "sqlite":
                # The connection runs in autocommit mode (see db.py): open the write
                # transaction explicitly, holding the lock from the start.
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(self._sql, [self._params(row) for row in rows])
            connection.commit()
        except Exception:
            self.close()  # a fresh connection next time, whatever state this one is in
            raise

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _connect(self) -> Any:
        self._connection = self.db.engine.raw_connection()
        return self._connection

    def _params(self, row: dict[str, Any]) -> Any:
        values = {
            column: json.dumps(row[attribute]) if column in _JSON_COLUMNS else row.get(attribute)
            for column, attribute in _ATTRIBUTE.items()
        }
        if self._positions is None:
            return values
        return tuple(values[column] for column in self._positions)
