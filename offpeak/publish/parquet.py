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
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

BLOCK_BYTES = 16 << 20

# What is read of each JSONL line (a RequestObject); other fields are skipped.
_LINE = {
    "id": pl.String(),
    "status": pl.String(),
    "metadata": pl.Struct({"custom_id": pl.String()}),
    "result_body": pl.Struct(
        {
            "model": pl.String(),
            "choices": pl.List(
                pl.Struct(
                    {"message": pl.Struct({"content": pl.String()}), "finish_reason": pl.String()}
                )
            ),
            "usage": pl.Struct(
                {
                    "prompt_tokens": pl.Int64(),
                    "completion_tokens": pl.Int64(),
                    "total_tokens": pl.Int64(),
                }
            ),
        }
    ),
    "error": pl.Struct({"code": pl.String(), "message": pl.String()}),
}

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("custom_id", pa.string()),
        pa.field("id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("content", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("model", pa.string()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
    ]
)


def results_frame(lines: bytes) -> pl.DataFrame:
    """The result rows of a block of JSONL lines (pure: no I/O)."""
    frame = pl.read_ndjson(io.BytesIO(lines), schema=_LINE)
    result = pl.col("result_body")
    first = result.struct.field("choices").list.first()
    usage = result.struct.field("usage")
    return frame.select(
        pl.col("metadata").struct.field("custom_id").alias("custom_id"),
        "id",
        "status",
        first.struct.field("message").struct.field("content").alias("content"),
        first.struct.field("finish_reason").alias("finish_reason"),
        result.struct.field("model").alias("model"),
        usage.struct.field("prompt_tokens").alias("prompt_tokens"),
        usage.struct.field("completion_tokens").alias("completion_tokens"),
        usage.struct.field("total_tokens").alias("total_tokens"),
        pl.col("error").struct.field("code").alias("error_code"),
        pl.col("error").struct.field("message").alias("error_message"),
    )


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
