"""The results of an ended Anthropic message batch, streamed as JSONL.

Composed on each read from the state database and the chunk files, page by page, never
written (reads never write): one :class:`~offpeak.schemas.anthropic.ResultLine` per
request, in input order; a cancelled batch keeps what finished before it was cancelled.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator

from pydantic_core import to_json

from offpeak.anthropic import result_line
from offpeak.run.chunk_files import read_results
from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.state.requests import LINE_COLUMNS, batch_line_rows
from offpeak.storage import ObjectStore

PAGE = 1000
_COLUMN = {name: index for index, name in enumerate(LINE_COLUMNS)}


class _Completions:
    """Chat completions by request id, from chunk files; the last few files stay loaded,
    as requests walked in id order need each file over a run of rows."""

    def __init__(self, store: ObjectStore, capacity: int = 4) -> None:
        self.store, self.capacity = store, capacity
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()

    def get(self, key: str, request_id: str) -> dict[str, object] | None:
        if key not in self._files:
            self._files[key] = {r.id: r.result_body for r in read_results(self.store, key)}
            if len(self._files) > self.capacity:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        body = self._files[key].get(request_id)
        return json.loads(body) if body else None


def result_lines(db: Database, store: ObjectStore, batch: Batch) -> Iterator[bytes]:
    """The JSONL lines of ``batch``'s results, a page of them per chunk."""
    completions = _Completions(store)
    with db.session() as session:
        for rows in batch_line_rows(session, batch.key_id, batch.id, PAGE):
            out = []
            for row in rows:
                rid, status = row[_COLUMN["id"]], row[_COLUMN["status"]]
                key = row[_COLUMN["result_key"]]
                completion = (
                    completions.get(key, rid) if key and status == Status.COMPLETED else None
                )
                meta = json.loads(row[_COLUMN["metadata"]] or "{}")
                line = result_line(
                    rid,
                    meta.get("custom_id"),
                    status,
                    completion,
                    row[_COLUMN["error_code"]],
                    row[_COLUMN["error_message"]],
                )
                out.append(to_json(line) + b"\n")
            yield b"".join(out)
