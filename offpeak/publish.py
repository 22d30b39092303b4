"""Publishing: one JSONL file per finished batch, one full request object per line.

A line is the :class:`~offpeak.schemas.RequestObject` of one request, the object the
API answers for it, composed without building it: page by page, the requests' state
rows (plain tuples) become a polars frame, joined by id to the bodies of their
segments and the results of their chunk files, and each line is concatenated from the
JSON of the small fields (encoded by polars) and the request and result bodies, spliced
in as the JSON text their Parquet files already hold, never parsed. A test checks each
line against the object built the slow way.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from offpeak.clock import now
from offpeak.schemas import Status
from offpeak.state import batches, requests
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.storage import ObjectStore

PAGE = 10_000

# Polars types of the columns read per request (requests.LINE_COLUMNS, by name).
_TYPES: dict[str, pl.DataType] = {
    "id": pl.String(),
    "status": pl.String(),
    "created_at": pl.Int64(),
    "expires_at": pl.Int64(),
    "in_progress_at": pl.Int64(),
    "ended_at": pl.Int64(),
    "metadata": pl.String(),
    "body": pl.String(),
    "segment": pl.String(),
    "result_key": pl.String(),
    "error_code": pl.String(),
    "error_message": pl.String(),
    "completion_window": pl.String(),
    "webhook": pl.String(),
    "batch_id": pl.String(),
}
_SCHEMA = {name: _TYPES[name] for name in requests.LINE_COLUMNS}


def results_key(batch: Batch) -> str:
    return f"results/{batch.key_id}/{batch.id}.jsonl"


@dataclass(frozen=True)
class Published:
    batch_id: str
    status: Status
    key: str
    lines: int


def _text(column: pl.Expr) -> pl.Expr:
    """Stored JSON text as a value: as is, or null when absent or empty."""
    return pl.when(column.is_not_null() & (column != "")).then(column).otherwise(pl.lit("null"))


def _line() -> pl.Expr:
    """The line of a row of (request columns + ``request_body`` + ``result_body``): the
    fields of RequestObject in its order, the bodies spliced in as JSON text."""
    head = pl.struct("id", "status", "created_at", "expires_at", "in_progress_at", "ended_at")
    error = pl.when(pl.col("error_code").is_not_null() & (pl.col("error_code") != "")).then(
        pl.struct(code="error_code", message=pl.col("error_message").fill_null(""))
    )
    tail = pl.struct(error.alias("error"), "completion_window", "webhook", "batch_id")
    return pl.concat_str(
        head.struct.json_encode().str.head(-1),  # without its closing brace
        pl.lit(',"metadata":'),
        _text(pl.col("metadata")),
        pl.lit(',"request_body":'),
        _text(pl.col("request_body")),
        pl.lit(',"result_body":'),
        _text(pl.col("result_body")),
        pl.lit(","),
        tail.struct.json_encode().str.tail(-1),  # without its opening brace
    ).alias("line")


LINE = _line()


class _TextFiles:
    """One JSON-text column of Parquet files (bodies of segments, results of chunk files)
    as rows of (id, text, file key). The last few files stay loaded: rows walked in id
    order need each file over a run of pages."""

    def __init__(self, store: ObjectStore, column: str, key: str, capacity: int = 4) -> None:
        self.store, self.column, self.key, self.capacity = store, column, key, capacity
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()

    def join(self, page: pl.DataFrame, name: str) -> pl.DataFrame:
        """``page`` with a column ``name``: the text of each row in its file, if any."""
        # In order of first use, so the file a page ends with is the last one loaded.
        keys = [key for key in page[self.key].unique(maintain_order=True).to_list() if key]
        if not keys:
            return page.with_columns(pl.lit(None, pl.String).alias(name))
        texts = pl.from_arrow(pa.concat_tables([self._table(key) for key in keys]))
        assert isinstance(texts, pl.DataFrame)
        texts = texts.rename({self.column: name})
        return page.join(texts, on=[self.key, "id"], how="left", maintain_order="left")

    def _table(self, key: str) -> pa.Table:
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        table = pq.ParquetFile(pa.BufferReader(self.store.get(key))).read(["id", self.column])
        table = table.append_column(self.key, pa.repeat(pa.scalar(key), len(table)))
        self._tables[key] = table
        if len(self._tables) > self.capacity:
            self._tables.popitem(last=False)
        return table


def _lines(page: pl.DataFrame, bodies: _TextFiles, results: _TextFiles) -> pl.DataFrame:
    """The page's lines, and which of them failed."""
    joined = results.join(bodies.join(page, "segment_body"), "result_body")
    if joined.height != page.height:
        raise RuntimeError("a segment or chunk file holds a request id twice")
    # Until sealed, a body is in the database; after, in its segment.
    body = pl.col("body")
    request_body = pl.when(body.is_not_null() & (body != "")).then(body)
    lines = joined.with_columns(
        request_body.otherwise(pl.col("segment_body")).alias("request_body")
    ).select(LINE, failed=pl.col("status") == Status.FAILED.value)
    return _one_line_each(lines)


def _one_line_each(lines: pl.DataFrame) -> pl.DataFrame:
    """Valid JSON text may break lines between tokens; a JSONL line may not. Such rare
    lines are re-encoded."""
    broken = lines["line"].str.contains("[\n\r]")
    if not broken.any():
        return lines
    fixed = [_compact(line) for line in lines["line"].filter(broken)]
    return lines.with_columns(lines["line"].scatter(broken.arg_true(), fixed))


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def _pages(db: Database, batch: Batch) -> Iterator[pl.DataFrame]:
    """The batch's requests in id order, as frames of PAGE rows."""
    with db.session() as session:
        for rows in requests.batch_line_rows(session, batch.key_id, batch.id, PAGE):
            yield pl.DataFrame(dict(zip(_SCHEMA, zip(*rows, strict=True), strict=True)), _SCHEMA)


def publish_batch(db: Database, store: ObjectStore, batch: Batch) -> Published:
    """Write the batch's JSONL (streamed page by page through a temporary file, uploaded
    in parts when large) and mark the batch ended: `completed`, or `failed` when every
    request failed.
    """
    bodies = _TextFiles(store, "request_body", "segment")
    results = _TextFiles(store, "result_body", "result_key")
    lines = failed = 0
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as out:
        path = Path(out.name)
        try:
            for page in _pages(db, batch):
                frame = _lines(page, bodies, results)
                frame.select("line").write_csv(out, include_header=False, quote_style="never")
                lines += frame.height
                failed += int(frame["failed"].sum())
            out.close()
            key = results_key(batch)
            store.put_file(key, path)
        finally:
            path.unlink(missing_ok=True)
    status = Status.FAILED if lines and failed == lines else Status.COMPLETED
    batches.finish_batch(db, batch.id, status, key, now())
    return Published(batch.id, status, key, lines)


def publish_ready(db: Database, store: ObjectStore) -> list[Published]:
    """Publish every open batch whose requests have all ended."""
    return [publish_batch(db, store, batch) for batch in batches.ready_to_publish(db)]
