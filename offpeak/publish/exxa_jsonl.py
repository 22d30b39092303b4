"""Publishing: one JSONL file per finished batch, one full request object per line.

A line is the :class:`~offpeak.schemas.RequestObject` of one request, the object the
API answers for it, composed without building it. Page by page, the state database
hands over each request's plain columns as Arrow, no Python object per row
(:func:`offpeak.state.requests.batch_line_pages`); their frame is joined by id to the
bodies of their segments and the results of their chunk files, and polars expressions
compose each line. Every stored field reaches the file through a JSON encoder: the
plain columns (ids, status, times, error, completion window, webhook) and the carbon
object through polars', the metadata through orjson's or Python's (:func:`encode_metadata`).
The request and result bodies are the JSON text their writers encoded (pydantic at
ingestion, the chunk writer at run time); they are spliced in as they are, never parsed,
unless one holds a raw control character (a line break between tokens, say): that one
is parsed and encoded again. A test checks each line against the object built the slow
way; another puts awkward stored values through a whole batch.

:func:`publish_ready` publishes each ready batch on its own: a batch whose publishing
fails is marked `failed` with the reason in its metadata, and the next one goes on.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from contextlib import closing, suppress
from dataclasses import dataclass
from types import NoneType
from typing import Any, TypeVar, get_args

import numpy as np
import orjson
import polars as pl
from sqlalchemy.exc import DBAPIError, OperationalError

from offpeak.clock import now
from offpeak.errors import ObjectNotFound, StorageError
from offpeak.schemas import CarbonObject, Status
from offpeak.state import batches, requests
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)

PAGE = 10_000
T = TypeVar("T")

# RequestObject's fields around its JSON-text ones, in its order: each run encoded as one
# struct, cut open to splice the rest in (the tests check the order against the model).
_HEAD = ("id", "status", "created_at", "expires_at", "in_progress_at", "ended_at")
_TAIL = ("error", "completion_window", "webhook", "batch_id", "carbon")


def _dtype(annotation: Any) -> pl.DataType:
    (kind,) = [t for t in (get_args(annotation) or (annotation,)) if t is not NoneType]
    return {float: pl.Float64(), int: pl.Int64(), str: pl.String()}[kind]


# The carbon object, decoded to its fields to go through the encoder like the rest.
_CARBON = pl.Struct(
    {name: _dtype(field.annotation) for name, field in CarbonObject.model_fields.items()}
)


def results_key(batch: Batch) -> str:
    return f"results/{batch.key_id}/{batch.id}.jsonl"


@dataclass(frozen=True)
class Published:
    batch_id: str
    status: Status
    key: str
    lines: int


# --- the lines: pure -------------------------------------------------------------------

# As ingestion stores it (offpeak.ingest.rows.metadata_json), so a line holds the
# metadata as stored; but refusing what is not JSON (NaN, Infinity).
_METADATA = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """``value`` with every float that is not finite as null (what JSON can hold)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def encode_metadata(text: str | None) -> str:
    """Stored metadata (JSON text) as the encoder writes it: ``{}`` when absent; a
    non-finite number that an older release stored becomes null.

    orjson decodes and encodes it first (fast and strict); where its text is the one
    stored (plain ASCII, as most metadata is) that is the answer. Else, or where orjson
    refuses the text (NaN, an escaped lone surrogate, a raw control character in a
    string, an integer past 64 bits it would read as a float), Python's parser reads it
    and its encoder writes it as ingestion stores metadata.
    """
    if not text:
        return "{}"
    try:
        if orjson.dumps(orjson.loads(text)) == text.encode():
            return text
    except (orjson.JSONDecodeError, TypeError):  # TypeError: orjson's encoding error
        pass
    value = json.loads(text, strict=False)
    try:
        return _METADATA.encode(value)
    except ValueError:
        return _METADATA.encode(_finite(value))


def encode_text(text: str) -> str:
    """JSON text (with raw line breaks or control characters) as one compact line."""
    value = json.loads(text, strict=False)  # strict=False: raw controls inside strings
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        compact.encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, as UTF-8 cannot hold it
        compact = json.dumps(value, separators=(",", ":"))
    return compact


def page_frame(page: pl.DataFrame) -> pl.DataFrame:
    """A page of LINE_COLUMNS with its metadata encoded (:func:`encode_metadata`)."""
    texts = page["metadata"].fill_null("")
    # Metadata repeats ("{}" above all): each text encoded once per page, and only the
    # ones whose encoding differs from the stored text replaced.
    changed = {text: encode_metadata(text) for text in texts.unique().to_list()}
    changed = {text: encoded for text, encoded in changed.items() if encoded != text}
    if changed:
        texts = texts.replace(list(changed), list(changed.values()))
    return page.with_columns(metadata=texts)


def _json(column: pl.Expr) -> pl.Expr:
    """Stored JSON text as a value: as is, or null when absent or empty."""
    return pl.when(column.is_not_null() & (column != "")).then(column).otherwise(pl.lit("null"))


def _line(batch_id: str) -> pl.Expr:
    """The line of a row of a joined page (plain columns, ``request_body``,
    ``result_body``), with its line break."""
    error = (
        pl.when(pl.col("error_code").is_not_null() & (pl.col("error_code") != ""))
        .then(pl.struct(code=pl.col("error_code"), message=pl.col("error_message").fill_null("")))
        .alias("error")
    )
    carbon = pl.col("carbon").replace("", None).str.json_decode(_CARBON).alias("carbon")
    made = {"error": error, "batch_id": pl.lit(batch_id).alias("batch_id"), "carbon": carbon}
    # Each run of fields as the encoder writes its object, cut open where the JSON texts
    # go in: the head keeps the line's opening brace, the tail its closing one.
    head = pl.struct(*_HEAD).struct.json_encode().str.head(-1)
    tail = pl.struct(*[made.get(name, name) for name in _TAIL]).struct.json_encode().str.slice(1)
    return pl.concat_str(
        head,
        pl.lit(',"metadata":'),
        "metadata",
        pl.lit(',"request_body":'),
        _json(pl.col("request_body")),
        pl.lit(',"result_body":'),
        _json(pl.col("result_body")),
        pl.lit(","),
        tail,
        pl.lit("\n"),
    ).alias("line")


def compose(page: pl.DataFrame, batch_id: str) -> pl.DataFrame:
    """The lines of a joined page, and which of them failed."""
    return page.select(_line(batch_id), failed=pl.col("status") == Status.FAILED.value)


_RAW_CONTROL = re.compile(r"[\x00-\x1f]")


def _encode_bodies(page: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """``page`` with the bodies of ``rows`` (a mask) that hold a raw control character
    parsed and encoded again; the others as they are."""
    fixed = {}
    for name in ("request_body", "result_body"):
        column = page[name]
        texts = [
            encode_text(text) if text and _RAW_CONTROL.search(text) else text
            for text in column.filter(rows)
        ]
        fixed[name] = column.scatter(rows.arg_true(), texts)
    return page.with_columns(**fixed)


def page_bytes(page: pl.DataFrame, batch_id: str) -> tuple[bytes, int]:
    """The page's lines as UTF-8, and how many of them failed."""
    lines = compose(page, batch_id)
    data = lines["line"].str.join("").cast(pl.Binary).item() if lines.height else b""
    # Everything the encoders wrote escapes control characters: a raw one (beyond each
    # line's break) comes from a body, whose line is encoded again (rare).
    if np.count_nonzero(np.frombuffer(data, np.uint8) < 0x20) > lines.height:
        raw = lines["line"].str.head(-1).str.contains(r"[\x00-\x1f]")
        lines = compose(_encode_bodies(page, raw), batch_id)
        data = lines["line"].str.join("").cast(pl.Binary).item()
    return data, int(lines["failed"].sum())


# --- reading: the state database and the Parquet files ------------------------------------


class _TextFiles:
    """One JSON-text column of Parquet files (bodies of segments, results of chunk files)
    as rows of (id, text, file key). The last few files stay loaded: rows walked in id
    order need each file over a run of pages."""

    def __init__(self, store: ObjectStore, column: str, key: str, capacity: int = 4) -> None:
        self.store, self.column, self.key, self.capacity = store, column, key, capacity
        self._frames: OrderedDict[str, pl.DataFrame] = OrderedDict()

    def join(self, page: pl.DataFrame, name: str) -> pl.DataFrame:
        """``page`` with a column ``name``: the text of each row in its file, if any."""
        # In order of first use, so the file a page ends with is the last one loaded.
        keys = [key for key in page[self.key].unique(maintain_order=True).to_list() if key]
        if not keys:
            return page.with_columns(pl.lit(None, pl.String).alias(name))
        texts = pl.concat([self._frame(key) for key in keys], rechunk=False)
        return page.join(
            texts.rename({self.column: name}),
            on=[self.key, "id"],
            how="left",
            maintain_order="left",
        )

    def _frame(self, key: str) -> pl.DataFrame:
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        frame = pl.read_parquet(self.store.get(key), columns=["id", self.column])
        frame = frame.with_columns(pl.lit(key).alias(self.key))
        self._frames[key] = frame
        if len(self._frames) > self.capacity:
            self._frames.popitem(last=False)
        return frame


def _joined(page: pl.DataFrame, bodies: _TextFiles, results: _TextFiles) -> pl.DataFrame:
    """The page with its ``request_body`` and ``result_body`` texts."""
    joined = results.join(bodies.join(page, "segment_body"), "result_body")
    if joined.height != page.height:
        raise RuntimeError("a segment or chunk file holds a request id twice")
    # Until sealed, a body is in the database (empty, read as null, when not); after, in
    # its segment.
    return joined.with_columns(request_body=pl.coalesce("body", "segment_body"))


def _pages(db: Database, batch: Batch) -> Generator[pl.DataFrame, None, None]:
    """The batch's requests in id order, as frames of PAGE rows."""
    for table in requests.batch_line_pages(db, batch.key_id, batch.id, PAGE):
        yield page_frame(pl.DataFrame(table))


def _joined_pages(
    db: Database, store: ObjectStore, batch: Batch
) -> Generator[pl.DataFrame, None, None]:
    """The pages joined to their bodies and results, the next pages read meanwhile."""
    bodies = _TextFiles(store, "request_body", "segment")
    results = _TextFiles(store, "result_body", "result_key")
    with closing(_ahead(lambda: _pages(db, batch))) as pages:
        for page in pages:
            yield _joined(page, bodies, results)


def _ahead(
    make: Callable[[], Generator[T, None, None]], depth: int = 2
) -> Generator[T, None, None]:
    """The items of ``make()``, made in a thread while the caller works on earlier ones:
    at most ``depth`` wait, so memory stays bounded. The thread's errors are raised here;
    closing this generator stops the thread (and closes ``make()``'s).
    """
    items: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            with closing(make()) as made:
                for item in made:
                    items.put((True, item))
                    if stop.is_set():
                        return
            items.put((False, None))
        except BaseException as exc:
            items.put((False, exc))

    thread = threading.Thread(target=run, name="publish-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, item = items.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a put waiting for room go through
            with suppress(queue.Empty):
                items.get(timeout=0.01)
        thread.join()


# --- publishing ------------------------------------------------------------------------


def publish_batch(db: Database, store: ObjectStore, batch: Batch) -> Published:
    """Write the batch's JSONL (streamed page by page, the next page read from the
    database while one is written) and mark the batch ended: `completed`, or `failed`
    when every request failed.
    """
    key = results_key(batch)
    lines = failed = 0
    with (
        store.writer(key) as out,
        closing(_ahead(lambda: _joined_pages(db, store, batch))) as pages,
    ):
        for page in pages:
            data, page_failed = page_bytes(page, batch.id)
            out.write(data)
            lines += page.height
            failed += page_failed
    status = Status.FAILED if lines and failed == lines else Status.COMPLETED
    batches.finish_batch(db, batch.id, status, key, now())
    return Published(batch.id, status, key, lines)


def transient(exc: BaseException) -> bool:
    """Whether publishing may succeed by itself later: storage or the database out of
    reach, not a lost object or a stored value that cannot be published."""
    if isinstance(exc, ObjectNotFound):
        return False
    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError) or exc.connection_invalidated
    return isinstance(exc, StorageError | ConnectionError | TimeoutError)


def publish_ready(db: Database, store: ObjectStore) -> list[Published]:
    """Publish every open batch whose requests have all ended, each on its own.

    A batch that cannot be published does not stop the others: on a transient error
    (storage or database out of reach) it stays open for the next run; on any other it
    is marked `failed`, the reason in its metadata (``offpeak_publish_error``). Only the
    batches published are returned.
    """
    published = []
    for batch in batches.ready_to_publish(db):
        try:
            published.append(publish_batch(db, store, batch))
        except Exception as exc:  # one batch's failure, whatever it is, is that batch's
            reason = f"{type(exc).__name__}: {exc}"
            if transient(exc):
                log.warning("batch %s not published, retried later: %s", batch.id, reason)
                continue
            log.error("batch %s cannot be published, marked failed: %s", batch.id, reason)
            try:
                batches.fail_publish(db, batch.id, "publish_failed", reason[:1000], now())
            except Exception as record:  # left open: the next run tries it again
                log.error("batch %s: its failure not recorded: %s", batch.id, record)
    return published
