"""The hot insert of accepted requests: one DB-API connection, one prepared statement.

`POST /v1/requests` commits a row per call. Going through a pooled SQLAlchemy
connection costs about 0.2 ms per transaction here, more than the insert itself, so
the committer keeps one raw connection and executes the compiled INSERT directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table, insert, inspect

from offpeak.schemas import Status
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


@dataclass(frozen=True)
class SealedRows:
    """Requests registered already sealed in one segment (dataset rows): per-row ids,
    metadata (JSON text) and token estimates, the rest shared."""

    ids: pa.Array
    metadata: pa.Array
    est_tokens: pa.Array
    key_id: str
    batch_id: str
    model: str
    completion_window: str
    segment: str
    created_at: int
    expires_at: int

    def shared(self) -> tuple[Any, ...]:
        return (
            self.key_id,
            self.batch_id,
            Status.REGISTERED.value,
            self.model,
            self.completion_window,
            self.segment,
            self.created_at,
            self.expires_at,
        )


_SHARED = (
    "key_id",
    "batch_id",
    "status",
    "model",
    "completion_window",
    "segment",
    "created_at",
    "expires_at",
)
# SQLite takes a segment's rows in one statement, expanded by json_each over the JSON
# array of their metadata: binding each row's values from Python would cost more than
# inserting it. Ids (24 characters) and estimates (EST_DIGITS) come as fixed-width
# blobs, cut by position: cheaper than parsing them out of JSON.
EST_DIGITS = 10
_SQLITE_SEALED = (
    f"INSERT INTO {_TABLE.name} (id, metadata, est_tokens, {', '.join(_SHARED)}) "
    f"SELECT CAST(substr(:ids, key * 24 + 1, 24) AS TEXT), value, "
    f"CAST(substr(:est, key * {EST_DIGITS} + 1, {EST_DIGITS}) AS INTEGER), "
    f"{', '.join(':' + name for name in _SHARED)} FROM json_each(:metadata)"
)


def _joined(values: pa.Array, separator: str = "") -> str:
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(values)], values), separator)
    return str(joined[0].as_py())


def _sqlite_parameters(rows: SealedRows) -> dict[str, Any]:
    """The statement's parameters, built column-wise."""
    if not pc.all(pc.equal(pc.utf8_length(rows.ids), 24)).as_py():
        raise ValueError("request ids must be 24 characters")
    estimates = pc.utf8_lpad(pc.cast(rows.est_tokens, pa.string()), EST_DIGITS, "0")
    return {
        "ids": _joined(rows.ids).encode(),
        "est": _joined(estimates).encode(),
        "metadata": f"[{_joined(rows.metadata, ',')}]",
        **dict(zip(_SHARED, rows.shared(), strict=True)),
    }


def insert_sealed(db: Database, rows: SealedRows) -> None:
    """Register requests already sealed in a segment, in one transaction on a raw DB-API
    connection (PostgreSQL through COPY).

    They skip the group commit and the seal writer: their bodies are in their segment.
    """
    if not len(rows.ids):
        return
    parameters = _sqlite_parameters(rows) if db.dialect == "sqlite" else None
    connection: Any = db.engine.raw_connection()
    try:
        with db.writer_turn():
            cursor = connection.cursor()
            if db.dialect == "postgresql":
                columns = ", ".join(("id", "metadata", "est_tokens", *_SHARED))
                shared = rows.shared()
                per_row = zip(
                    rows.ids.to_pylist(),
                    rows.metadata.to_pylist(),
                    rows.est_tokens.to_pylist(),
                    strict=True,
                )
                with cursor.copy(f"COPY {_TABLE.name} ({columns}) FROM STDIN") as copy:
                    for row in per_row:
                        copy.write_row((*row, *shared))
            else:
                # The key and the batch exist (the caller created the batch): checking
                # both foreign keys costs two lookups per row, some 15% of the insert.
                cursor.execute("PRAGMA foreign_keys=OFF")
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                    cursor.execute(_SQLITE_SEALED, parameters)
                    connection.commit()
                finally:
                    cursor.execute("PRAGMA foreign_keys=ON")
            connection.commit()
    except Exception:
        connection.rollback()
        raise
    finally:
        connection.close()
