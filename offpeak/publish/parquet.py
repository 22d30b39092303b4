"""A batch's results as a Parquet table, converted from its published JSONL as it streams.

One row per request, in the JSONL's order (request id order): the caller's
``custom_id`` (the dataset's id column) first, then status, the completion text, the
finish reason, usage, and the error of a failed request. The JSONL is parsed a block
of lines at a time by polars and each block becomes one row group, written out at
once: memory holds one block, whatever the batch's size.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from offpeak.schemas import RequestObject
from offpeak.schemas.arrow import arrow_schema, arrow_type, non_null
from offpeak.schemas.results import ResultsRow

BLOCK_BYTES = 16 << 20

# Where each column of the results table is in a JSONL line (a RequestObject); 0 is the
# first item of a list (the first choice). Nothing else of a line is read.
Path = tuple[str | int, ...]
COLUMNS: dict[str, Path] = {
    "custom_id": ("metadata", "custom_id"),
    "id": ("id",),
    "status": ("status",),
    "content": ("result_body", "choices", 0, "message", "content"),
    "finish_reason": ("result_body", "choices", 0, "finish_reason"),
    "model": ("result_body", "model"),
    "prompt_tokens": ("result_body", "usage", "prompt_tokens"),
    "completion_tokens": ("result_body", "usage", "completion_tokens"),
    "total_tokens": ("result_body", "usage", "total_tokens"),
    "error_code": ("error", "code"),
    "error_message": ("error", "message"),
}
RESULTS_SCHEMA = arrow_schema(ResultsRow)


def _line_type(column: str, path: Path) -> pa.DataType:
    """The type of a line's value at ``path``: RequestObject's own as far as it types
    the path; the results column's inside free-form JSON (metadata, result_body)."""
    model: type[BaseModel] = RequestObject
    for depth, step in enumerate(path):
        annotation, _ = non_null(model.model_fields[str(step)].annotation)
        if depth == len(path) - 1:
            return arrow_type(annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return RESULTS_SCHEMA.field(column).type


def _nested(node: pa.DataType | dict[str | int, Any]) -> pa.DataType:
    if isinstance(node, pa.DataType):
        return node
    if list(node) == [0]:
        return pa.list_(_nested(node[0]))
    return pa.struct([pa.field(str(key), _nested(value)) for key, value in node.items()])


def _line_schema() -> pl.Schema:
    """The part of a JSONL line the table reads, typed for polars."""
    tree: dict[str | int, Any] = {}
    for column, path in COLUMNS.items():
        node = tree
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = _line_type(column, path)
    fields = [pa.field(str(name), _nested(node)) for name, node in tree.items()]
    return pl.from_arrow(pa.schema(fields).empty_table()).schema  # type: ignore[union-attr]


_LINE = _line_schema()


def _value(path: Path) -> pl.Expr:
    expr = pl.col(str(path[0]))
    for step in path[1:]:
        if isinstance(step, int):
            expr = expr.list.get(step, null_on_oob=True)
        else:
            expr = expr.struct.field(step)
    return expr


def results_frame(lines: bytes) -> pl.DataFrame:
    """The result rows of a block of JSONL lines (pure: no I/O)."""
    frame = pl.read_ndjson(io.BytesIO(lines), schema=_LINE)
    return frame.select(_value(path).alias(column) for column, path in COLUMNS.items())


def line_blocks(stream: BinaryIO, size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Whole lines of ``stream``, about ``size`` bytes at a time."""
    rest = b""
    while chunk := stream.read(size):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
            rest = data[cut:]
        else:
            rest = data
    if rest.strip():
        yield rest


class _Sink(io.RawIOBase):
    """A write-only file handing over what was written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def parquet_from_jsonl(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Parquet bytes of the results in the JSONL ``stream``, piece by piece (a row group
    per block of lines; the footer last)."""
    sink = _Sink()
    writer = pq.ParquetWriter(sink, RESULTS_SCHEMA, compression="zstd")
    try:
        for block in line_blocks(stream, block_bytes):
            table = results_frame(block).to_arrow().cast(RESULTS_SCHEMA)
            writer.write_table(table)
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()
