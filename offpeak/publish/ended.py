"""The ended requests of a batch with their result bodies, page by page: what the
OpenAI output files and the Anthropic results are both made of."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from offpeak.run.chunk_files import read_results
from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.state.requests import LINE_COLUMNS, batch_line_rows
from offpeak.storage import ObjectStore

PAGE = 1000
_COLUMN = {name: index for index, name in enumerate(LINE_COLUMNS)}


@dataclass(frozen=True)
class Ended:
    id: str
    custom_id: str | None
    status: str
    result_body: str | None  # the engine's JSON answer, for a completed request
    error_code: str | None
    error_message: str | None


class _Results:
    """Result bodies by request id, from chunk files; the last few files stay loaded, as
    requests walked in id order need each file over a run of rows."""

    def __init__(self, store: ObjectStore, capacity: int = 4) -> None:
        self.store, self.capacity = store, capacity
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()

    def body(self, key: str, request_id: str) -> str | None:
        if key not in self._files:
            self._files[key] = {r.id: r.result_body for r in read_results(self.store, key)}
            if len(self._files) > self.capacity:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key].get(request_id) or None


def ended_pages(db: Database, store: ObjectStore, batch: Batch) -> Iterator[list[Ended]]:
    """``batch``'s requests in input order, a page at a time."""
    results = _Results(store)
    with db.session() as session:
        for rows in batch_line_rows(session, batch.key_id, batch.id, PAGE):
            page = []
            for row in rows:
                rid, status = row[_COLUMN["id"]], row[_COLUMN["status"]]
                key = row[_COLUMN["result_key"]]
                page.append(
                    Ended(
                        id=rid,
                        custom_id=json.loads(row[_COLUMN["metadata"]] or "{}").get("custom_id"),
                        status=status,
                        result_body=(
                            results.body(key, rid) if key and status == Status.COMPLETED else None
                        ),
                        error_code=row[_COLUMN["error_code"]],
                        error_message=row[_COLUMN["error_message"]],
                    )
                )
            yield page
