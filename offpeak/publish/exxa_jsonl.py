"""Publishing: one JSONL file per finished batch, one full request object per line.

A line is the :class:`~offpeak.schemas.RequestObject` of one request, the object the
API answers for it, composed without building it: page by page, the database hands
over each request's line as JSON text up to its request body and after its result body
(with the keys to find those), which becomes a polars frame (in a thread, while the
page before is written), joined by id to the bodies of their segments and the results
of their chunk files; each line is concatenated from the database's parts and the
request and result bodies, spliced in as the JSON text their Parquet files already
hold, never parsed, and written from the buffers polars composed it in. A test checks
each line against the object built the slow way.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa

from offpeak.clock import now
from offpeak.schemas import Status
from offpeak.state import batches, requests
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.storage import ObjectStore

PAGE = 10_000
T = TypeVar("T")

# The fields of a page (requests.batch_line_pages), all text.
_SCHEMA = dict.fromkeys(requests.LINE_FIELDS, pl.String())


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
    """The line of a row of a page and its ``request_body`` and ``result_body``: the
    bodies spliced as JSON text between the parts of the line the database encoded,
    with its line break."""
    return pl.concat_str(
        "head",
        _text(pl.col("request_body")),
        pl.lit(',"result_body":'),
        _text(pl.col("result_body")),
        "tail",
        pl.lit("\n"),
    ).alias("line")


LINE = _line()


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


def _lines(page: pl.DataFrame, bodies: _TextFiles, results: _TextFiles) -> pl.DataFrame:
    """The page's lines, and which of them failed."""
    joined = results.join(bodies.join(page, "segment_body"), "result_body")
    if joined.height != page.height:
        raise RuntimeError("a segment or chunk file holds a request id twice")
    # Until sealed, a body is in the database (empty, read as null, when not); after, in
    # its segment.
    request_body = pl.coalesce("body", "segment_body").alias("request_body")
    lines = joined.with_columns(request_body).select(
        LINE, failed=pl.col("status") == Status.FAILED.value
    )
    return _one_line_each(lines)


def _one_line_each(lines: pl.DataFrame) -> pl.DataFrame:
    """Valid JSON text may break lines between tokens; a JSONL line may not. Such rare
    lines are re-encoded (a line's own break ends it: nothing follows)."""
    broken = lines["line"].str.contains("[\n\r][^\n\r]")
    if not broken.any():
        return lines
    fixed = [_compact(line) for line in lines["line"].filter(broken)]
    return lines.with_columns(lines["line"].scatter(broken.arg_true(), fixed))


def _compact(line: str) -> str:
    return json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) + "\n"


# An Arrow string view: length, prefix, data buffer, offset (strings over 12 bytes).
_VIEW = np.dtype([("length", "<i4"), ("prefix", "<i4"), ("buffer", "<i4"), ("offset", "<i4")])


def _text_parts(lines: pl.Series) -> list[memoryview]:
    """The UTF-8 text of ``lines`` end to end, as slices of the buffers polars holds
    them in (a run of lines stored one after the other is one slice): nothing copied."""
    array = lines.to_arrow(compat_level=pl.CompatLevel.newest())
    if array.type != pa.string_view() or array.null_count:
        raise TypeError(f"lines of type {array.type} with {array.null_count} nulls")
    _, view_buffer, *data = array.buffers()
    views = np.frombuffer(view_buffer, _VIEW)[array.offset : array.offset + len(array)]
    if not len(views):
        return []
    if views["length"].min() <= 12:  # held in the view itself: no line is that short
        raise ValueError("a line of 12 bytes or less")
    ends = views["offset"].astype(np.int64) + views["length"]
    starts = np.flatnonzero(
        (views["buffer"][1:] != views["buffer"][:-1]) | (views["offset"][1:] != ends[:-1])
    )
    firsts = np.concatenate(([0], starts + 1))
    lasts = np.concatenate((starts, [len(views) - 1]))
    return [
        memoryview(data[views["buffer"][first]])[views["offset"][first] : ends[last]]
        for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True)
    ]


def _pages(db: Database, batch: Batch) -> Generator[pl.DataFrame, None, None]:
    """The batch's requests in id order, as frames of PAGE rows."""
    with db.session() as session:
        for text in requests.batch_line_pages(session, batch.key_id, batch.id, PAGE):
            yield pl.read_csv(
                text,
                has_header=False,
                schema=_SCHEMA,
                separator=requests.FIELD_SEP,
                eol_char=requests.ROW_SEP,
                quote_char=None,
            ).sort("id")


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


def publish_batch(db: Database, store: ObjectStore, batch: Batch) -> Published:
    """Write the batch's JSONL (streamed page by page, the next page read from the
    database while one is written) and mark the batch ended: `completed`, or `failed`
    when every request failed.
    """
    bodies = _TextFiles(store, "request_body", "segment")
    results = _TextFiles(store, "result_body", "result_key")
    key = results_key(batch)
    lines = failed = 0
    with store.writer(key) as out, closing(_ahead(lambda: _pages(db, batch))) as pages:
        for page in pages:
            frame = _lines(page, bodies, results)
            out.writelines(_text_parts(frame["line"]))
            lines += frame.height
            failed += int(frame["failed"].sum())
    status = Status.FAILED if lines and failed == lines else Status.COMPLETED
    batches.finish_batch(db, batch.id, status, key, now())
    return Published(batch.id, status, key, lines)


def publish_ready(db: Database, store: ObjectStore) -> list[Published]:
    """Publish every open batch whose requests have all ended."""
    return [publish_batch(db, store, batch) for batch in batches.ready_to_publish(db)]
