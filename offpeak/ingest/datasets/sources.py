"""Dataset files as streams of Arrow record batches: Parquet, CSV or JSONL, local or S3.

A file is opened again for each pass over it, and read a block at a time, so a dataset
never sits in memory whole. A CSV or JSONL file reaches pyarrow's readers only once
:func:`~offpeak.ingest.datasets.bounds.check_stream` has read it (size after
decompression, depth of JSON nesting); a Parquet file is held to the size limit by its
metadata and by what its columns decode to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from offpeak.errors import DatasetError, DatasetSourceForbidden, DatasetTooLarge
from offpeak.ingest.datasets.bounds import Scanned, check_stream
from offpeak.schemas import DatasetFormat

BLOCK_BYTES = 8 << 20  # CSV and JSONL blocks at most (a row must fit in one)
COPY_BYTES = 8 << 20
_SUFFIXES: dict[str, DatasetFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
# Arrow's codec by a file's first bytes, not its name: an upload's temporary file has
# no suffix. bzip2's magic is long (`BZh`, a digit, then pi's BCD) so text never matches.
_MAGIC = {
    re.compile(rb"\x1f\x8b"): "gzip",
    re.compile(rb"BZh[1-9]1AY&SY"): "bz2",
    re.compile(rb"\x28\xb5\x2f\xfd"): "zstd",
    re.compile(rb"\x04\x22\x4d\x18"): "lz4",
}


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


def _bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _folder(prefix: str) -> str:
    # `s3://b/in` allows `in/...`, not `inbox/...`.
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def check_source(
    source: str, key_id: str, allowed: Mapping[str, Sequence[str]], storage_url: str
) -> None:
    """Refuse a dataset ``source`` that ``key_id`` may not read.

    A source is one S3 object (`s3://bucket/key`, no empty, `.` or `..` segment) under
    one of the key's ``allowed`` prefixes (or those of `*`), and never inside the
    service's own storage (``storage_url``: every key's files, requests and results),
    whatever the list says: the service reads it with its own credentials.
    Raises :class:`DatasetError` (``dataset_invalid_source``) for what is not such a
    URI, :class:`DatasetSourceForbidden` for a place the key may not read.
    """
    if not source.startswith("s3://"):
        raise DatasetError(
            f"source {source!r} is not an s3:// URI; upload a local file as the body",
            code="dataset_invalid_source",
        )
    bucket, key = _bucket_and_key(source)
    if not bucket or not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise DatasetError(
            f"source {source!r} names no object: s3://bucket/key, without empty, "
            "'.' or '..' segments",
            code="dataset_invalid_source",
        )
    if storage_url.startswith("s3://"):
        own_bucket, own_prefix = _bucket_and_key(storage_url.rstrip("/"))
        if bucket == own_bucket and key.startswith(_folder(own_prefix)):
            raise DatasetSourceForbidden(
                f"source {source!r} is inside the service's own storage, which is never "
                "a dataset source: upload the file as the body"
            )
    for prefix in (*allowed.get(key_id, ()), *allowed.get("*", ())):
        allowed_bucket, allowed_key = _bucket_and_key(prefix)
        if bucket == allowed_bucket and key.startswith(_folder(allowed_key)):
            return
    raise DatasetSourceForbidden(
        f"source {source!r} is not among the locations this API key may read datasets "
        "from (OFFPEAK_DATASET_SOURCES); upload the file as the body"
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

    def download(self, source: str, into: BinaryIO, max_bytes: int) -> None:
        """Copy the object ``source`` (`s3://bucket/key`) into ``into`` as stored, at
        most ``max_bytes`` of it. A dataset is read several times: from one local copy,
        so the object cannot change between the check of its bytes and their parsing."""
        copied = 0
        try:
            path = source.removeprefix("s3://")
            with self.filesystem().open_input_stream(path, compression=None) as stream:
                while chunk := stream.read(COPY_BYTES):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise DatasetTooLarge(
                            f"dataset {source} is larger than the {max_bytes}-byte limit"
                        )
                    into.write(chunk)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(
                f"cannot read dataset {source}: {exc}", code="dataset_unreadable"
            ) from None


class DatasetFile:
    """One dataset file, read as record batches of the columns asked for.

    ``max_bytes`` bounds the data once decompressed (CSV, JSONL) or as its Parquet
    metadata counts it uncompressed: past it, reading raises :class:`DatasetTooLarge`.
    ``label`` names the file in error messages (not a temporary copy's path).
    """

    def __init__(
        self,
        location: str | Path,
        kind: DatasetFormat | None = None,
        s3: S3Access | None = None,
        max_bytes: int | None = None,
        label: str | None = None,
    ) -> None:
        self.location = str(location)
        self.label = label or self.location
        self.max_bytes = max_bytes
        self._scanned: Scanned | None = None
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
        head = self._head()
        self.compression = next(
            (codec for magic, codec in _MAGIC.items() if magic.match(head)), None
        )
        if self.compression is not None and kind is None:
            head = self._head(self.compression)
        self.kind = kind or format_of(self.location, head)

    def _unreadable(self, exc: Exception) -> DatasetError:
        if isinstance(exc, UnicodeDecodeError):
            # pyarrow hands column names over as UTF-8; a CSV header in another encoding.
            return DatasetError(
                f"{self.kind_name} dataset {self.label}: its column names are not UTF-8 "
                f"text (byte {exc.start} of {exc.object[:40]!r}); save the file as UTF-8",
                code="dataset_not_utf8",
            )
        return DatasetError(
            f"cannot read {self.kind_name} dataset {self.label}: {exc}",
            code="dataset_unreadable",
        )

    @property
    def kind_name(self) -> str:
        return getattr(self, "kind", None) or "the"

    def _head(self, compression: str | None = None) -> bytes:
        try:
            with self.fs.open_input_stream(self.path, compression=compression) as stream:
                return cast(bytes, stream.read(64))
        except (OSError, pa.ArrowException) as exc:
            raise self._unreadable(exc) from None

    def schema(self) -> pa.Schema:
        """The dataset's columns (inferred from the first block for CSV and JSONL)."""
        try:
            if self.kind == "parquet":
                return self._parquet().schema_arrow
            with self._text_reader(None) as reader:
                schema: pa.Schema = reader.schema
            # pyarrow decodes column names only when they are asked for: ask here.
            schema.names  # noqa: B018
            return schema
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
            raise self._unreadable(exc) from None

    def batches(self, schema: pa.Schema, rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of the columns of ``schema`` (CSV and JSONL parsed as those types;
        Parquet batches hold at most ``rows`` rows)."""
        try:
            if self.kind == "parquet":
                decoded = 0
                for batch in self._parquet().iter_batches(batch_size=rows, columns=schema.names):
                    # Dictionary and run-length encodings hide sizes the metadata
                    # cannot show: count what decoding makes of them.
                    decoded += batch.nbytes
                    if self.max_bytes is not None and decoded > self.max_bytes:
                        raise DatasetTooLarge(
                            f"the dataset's columns decode to more than the "
                            f"{self.max_bytes}-byte limit"
                        )
                    yield batch
                return
            with self._text_reader(schema) as reader:
                yield from reader
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
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
        parquet = pq.ParquetFile(self.fs.open_input_file(self.path), pre_buffer=False)
        if self.max_bytes is not None:
            meta = parquet.metadata
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if size > self.max_bytes:
                raise DatasetTooLarge(
                    f"the dataset holds {size} bytes uncompressed, past the "
                    f"{self.max_bytes}-byte limit"
                )
        return parquet

    def _text_reader(self, schema: pa.Schema | None) -> Any:
        if self._scanned is None:  # once per file: its passes read the same bytes
            with self.fs.open_input_stream(self.path, compression=self.compression) as raw:
                self._scanned = check_stream(raw, self.max_bytes, self.kind == "jsonl")
        # Types are inferred from one large first block, as many rows as before; the
        # passes then read small blocks of those types.
        block = BLOCK_BYTES if schema is None else self._scanned.block_bytes(BLOCK_BYTES)
        stream = self.fs.open_input_stream(self.path, compression=self.compression)
        if self.kind == "csv":
            convert = pa_csv.ConvertOptions(
                include_columns=schema.names if schema is not None else None,
                column_types=schema,
                strings_can_be_null=True,
            )
            return pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=block),
                convert_options=convert,
            )
        parse = (
            pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            if schema is not None
            else None
        )
        return pa_json.open_json(
            stream, read_options=pa_json.ReadOptions(block_size=block), parse_options=parse
        )
