"""Dataset files as streams of Arrow record batches: Parquet, CSV or JSONL, local or S3.

A file is opened again for each pass over it, and read a block at a time, so a dataset
never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from offpeak.errors import DatasetError
from offpeak.schemas import DatasetFormat

BLOCK_BYTES = 8 << 20  # CSV and JSONL are parsed this many bytes at a time
_SUFFIXES: dict[str, DatasetFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")


def format_of(name: str, head: bytes = b"") -> DatasetFormat:
    """The format a file's name says (``.csv.gz`` counts as csv), else its first bytes."""
    lower = name.lower()
    for suffix in _COMPRESSED:
        lower = lower.removesuffix(suffix)
    for suffix, kind in _SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip()[:1] in (b"{", b"["):
        return "jsonl"
    if head:
        return "csv"
    raise DatasetError(
        f"cannot tell the format of {name!r}: give format=parquet, csv or jsonl",
        code="dataset_unreadable",
    )


@dataclass(frozen=True)
class S3Access:
    """How the service reaches `s3://` datasets: the object store's own endpoint."""

    endpoint_url: str | None = None
    region: str = "us-east-1"

    def filesystem(self) -> pa_fs.S3FileSystem:
        options: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.rpartition("://")
            options["endpoint_override"] = host.rstrip("/")
            options["scheme"] = scheme or "https"
        return pa_fs.S3FileSystem(**options)


class DatasetFile:
    """One dataset file, read as record batches of the columns asked for."""

    def __init__(
        self, location: str | Path, kind: DatasetFormat | None = None, s3: S3Access | None = None
    ) -> None:
        self.location = str(location)
        if self.location.startswith("s3://"):
            path = self.location.removeprefix("s3://")
            if "/" not in path.strip("/"):
                raise DatasetError(
                    f"{self.location} names no object: s3://bucket/key", code="dataset_unreadable"
                )
            self.fs: pa_fs.FileSystem = (s3 or S3Access()).filesystem()
            self.path = path
        else:
            self.fs, self.path = pa_fs.LocalFileSystem(), str(Path(location).resolve())
        self.kind = kind or format_of(self.location, self._head())

    def _unreadable(self, exc: Exception) -> DatasetError:
        return DatasetError(
            f"cannot read {self.kind_name} dataset {self.location}: {exc}",
            code="dataset_unreadable",
        )

    @property
    def kind_name(self) -> str:
        return getattr(self, "kind", None) or "the"

    def _head(self) -> bytes:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return cast(bytes, stream.read(64))
        except (OSError, pa.ArrowException) as exc:
            raise self._unreadable(exc) from None

    def schema(self) -> pa.Schema:
        """The dataset's columns (inferred from the first block for CSV and JSONL)."""
        try:
            if self.kind == "parquet":
                return self._parquet().schema_arrow
            with self._text_reader(None) as reader:
                return reader.schema
        except (OSError, pa.ArrowException) as exc:
            raise self._unreadable(exc) from None

    def batches(self, schema: pa.Schema, rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of the columns of ``schema`` (CSV and JSONL parsed as those types;
        Parquet batches hold at most ``rows`` rows)."""
        try:
            if self.kind == "parquet":
                yield from self._parquet().iter_batches(batch_size=rows, columns=schema.names)
                return
            with self._text_reader(schema) as reader:
                yield from reader
        except (OSError, pa.ArrowException) as exc:
            raise self._unreadable(exc) from None

    def rows_if_known(self) -> int | None:
        """The number of rows, when the file says it without being read (Parquet)."""
        if self.kind != "parquet":
            return None
        return int(self._parquet().metadata.num_rows)

    def never_empty(self, column: str) -> bool:
        """Whether the file's own statistics prove a text column holds no null and no
        empty string (Parquet, every row group with statistics), so a check can skip it."""
        if self.kind != "parquet":
            return False
        try:
            meta = self._parquet().metadata
            index = meta.schema.to_arrow_schema().get_field_index(column)
            if index < 0:
                return False
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(index).statistics
                if stats is None or not stats.has_min_max or stats.null_count != 0:
                    return False
                if stats.min in ("", b""):
                    return False
        except (OSError, pa.ArrowException, ValueError):
            return False
        return True

    def _parquet(self) -> pq.ParquetFile:
        # No pre-buffering: it keeps every column chunk read until the file is closed.
        return pq.ParquetFile(self.fs.open_input_file(self.path), pre_buffer=False)

    def _text_reader(self, schema: pa.Schema | None) -> Any:
        stream = self.fs.open_input_stream(self.path, compression="detect")
        if self.kind == "csv":
            convert = pa_csv.ConvertOptions(
                include_columns=schema.names if schema is not None else None,
                column_types=schema,
                strings_can_be_null=True,
            )
            return pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=convert,
            )
        parse = (
            pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            if schema is not None
            else None
        )
        return pa_json.open_json(
            stream, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES), parse_options=parse
        )
