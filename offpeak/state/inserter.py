"""The one insert of new requests: an Arrow table of offpeak.ingest.rows.REQUEST_ROWS,
or single requests' rows (offpeak.ingest.rows.request_row), onto a DB-API cursor, in
the caller's transaction.

Every ingest path ends here: the group committer (`POST /v1/requests`), an OpenAI
batch's lines (in the transaction that creates the batch) and a dataset's segments.
Columns every row shares (one run-end encoded run) are bound once. On SQLite a table
whose only per-row columns are id, metadata and token estimate (a dataset's or an
OpenAI file's segment) goes in as one statement expanded by `json_each`; any other on
SQLite by `executemany`; on PostgreSQL through COPY. Single requests' rows go in as
plain tuples by the same statements: a table of a few rows costs more to build and
read back (some 0.05 ms a row) than to insert.

`POST /v1/requests` commits a group of rows per call. Going through a pooled
SQLAlchemy connection costs about 0.2 ms per transaction here, more than the insert
itself, so the committer keeps one raw connection (:class:`RequestInserter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table

from offpeak.ingest.rows import ATTRIBUTES, COLUMNS, is_shared, metadata_json
from offpeak.state.db import Database
from offpeak.state.models import Request

_TABLE = cast(Table, Request.__table__).name
# SQLite takes a segment's rows in one statement, expanded by json_each over the JSON
# array of their metadata: binding each row's values from Python would cost more than
# inserting it. Ids (24 characters) and estimates (EST_DIGITS) come as fixed-width
# blobs, cut by position: cheaper than parsing them out of JSON.
EST_DIGITS = 10
_BULK_PER_ROW = {"id", "metadata", "est_tokens"}
_METADATA = COLUMNS.index("metadata")


def _value(column: pa.ChunkedArray) -> Any:
    """The one value of a shared column."""
    chunk = column.chunk(0) if column.num_chunks else None
    return chunk.values[0].as_py() if chunk is not None and len(chunk.values) else None


def _joined(values: pa.Array | pa.ChunkedArray, separator: str = "") -> str:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(values)], values), separator)
    return str(joined[0].as_py())


def _sqlite_bulk(cursor: Any, table: pa.Table, shared: dict[str, Any]) -> None:
    if not pc.all(pc.equal(pc.utf8_length(table["id"]), 24)).as_py():
        raise ValueError("request ids must be 24 characters")
    estimates = pc.utf8_lpad(pc.cast(table["est_tokens"], pa.string()), EST_DIGITS, "0")
    names = ", ".join(shared)
    sql = (
        f"INSERT INTO {_TABLE} (id, metadata, est_tokens{', ' if shared else ''}{names}) "
        f"SELECT CAST(substr(:ids, key * 24 + 1, 24) AS TEXT), value, "
        f"CAST(substr(:est, key * {EST_DIGITS} + 1, {EST_DIGITS}) AS INTEGER)"
        f"{''.join(', :' + name for name in shared)} FROM json_each(:metadata)"
    )
    cursor.execute(
        sql,
        {
            "ids": _joined(table["id"]).encode(),
            "est": _joined(estimates).encode(),
            "metadata": f"[{_joined(table['metadata'], ',')}]",
            **shared,
        },
    )


def _per_row(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def _record(row: dict[str, Any]) -> tuple[Any, ...]:
    """A single request's row as a tuple in COLUMNS order, as records_table holds it."""
    values = [row.get(attribute) for attribute in ATTRIBUTES]
    values[_METADATA] = metadata_json(values[_METADATA] or {})
    return tuple(values)


def _write_tuples(
    cursor: Any, dialect: str, names: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    columns = ", ".join(names)
    if dialect == "postgresql":
        with cursor.copy(f"COPY {_TABLE} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(names))
        cursor.executemany(f"INSERT INTO {_TABLE} ({columns}) VALUES ({marks})", rows)


def write_requests(cursor: Any, dialect: str, rows: pa.Table | Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (a table, or rows as request_row makes them) through ``cursor``;
    the caller commits."""
    if not isinstance(rows, pa.Table):
        if rows:
            _write_tuples(cursor, dialect, COLUMNS, [_record(row) for row in rows])
        return
    table = rows
    if not table.num_rows:
        return
    shared = {name: _value(table[name]) for name in table.column_names if is_shared(table[name])}
    per_row = set(table.column_names) - set(shared)
    if dialect != "postgresql" and per_row == _BULK_PER_ROW and table.num_rows > 1:
        _sqlite_bulk(cursor, table, shared)
    else:
        _write_tuples(cursor, dialect, table.column_names, _per_row(table))


def insert_table(db: Database, table: pa.Table, *, foreign_keys: bool = True) -> None:
    """Commit ``table``'s rows in one transaction on a fresh raw connection.

    ``foreign_keys=False`` (SQLite): the caller vouches that the key and the batch exist;
    checking both costs two lookups per row, some 15% of a dataset's insert.
    """
    if not table.num_rows:
        return
    connection: Any = db.engine.raw_connection()
    sqlite = db.dialect == "sqlite"
    try:
        with db.writer_turn():
            cursor = connection.cursor()
            if sqlite and not foreign_keys:
                cursor.execute("PRAGMA foreign_keys=OFF")  # only outside a transaction
            try:
                if sqlite:
                    # The connection runs in autocommit mode (see db.py): open the write
                    # transaction explicitly, holding the lock from the start.
                    cursor.execute("BEGIN IMMEDIATE")
                write_requests(cursor, db.dialect, table)
                connection.commit()
            except Exception:
                connection.rollback()
                raise
            finally:
                if sqlite and not foreign_keys:
                    cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        connection.close()


class RequestInserter:
    """Inserts request rows in one transaction per call, on its own connection.

    Not thread-safe: one owner (the group committer) calls it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._connection: Any = None

    def insert(
        self,
        rows: Sequence[dict[str, Any]] | pa.Table,
        also: Callable[[Any], None] | None = None,
    ) -> None:
        """Commit ``rows`` (as offpeak.ingest.rows.request_row makes them, or their
        table); when this returns they are durable. ``also`` runs on the cursor in the
        same transaction (storing idempotent answers with their requests)."""
        if not (rows.num_rows if isinstance(rows, pa.Table) else rows):
            return
        connection = self._connection or self._connect()
        with self.db.writer_turn():
            try:
                cursor = connection.cursor()
                if self.db.dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")  # see insert_table
                write_requests(cursor, self.db.dialect, rows)
                if also is not None:
                    also(cursor)
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
