"""Publishing: one JSONL file per finished batch, one full request object per line."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from offpeak.clock import now
from offpeak.schemas import Status
from offpeak.state import batches, requests
from offpeak.state.db import Database
from offpeak.state.models import Batch, Request
from offpeak.storage import ObjectStore
from offpeak.views import FileReader, request_objects

PAGE = 1000


def results_key(batch: Batch) -> str:
    return f"results/{batch.key_id}/{batch.id}.jsonl"


@dataclass(frozen=True)
class Published:
    batch_id: str
    status: Status
    key: str
    lines: int


def _pages(db: Database, batch: Batch) -> Iterator[list[Request]]:
    after: str | None = None
    while page := requests.list_requests(
        db, batch.key_id, after=after, limit=PAGE, batch_id=batch.id
    ):
        yield page
        after = page[-1].id


def publish_batch(db: Database, store: ObjectStore, batch: Batch) -> Published:
    """Write the batch's JSONL (streamed page by page through a temporary file, uploaded
    in parts when large) and mark the batch ended: `completed`, or `failed` when every
    request failed.
    """
    reader = FileReader(store)
    lines = failed = 0
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as out:
        path = Path(out.name)
        try:
            for page in _pages(db, batch):
                for obj in request_objects(store, page, reader):
                    out.write(obj.model_dump_json().encode() + b"\n")
                    lines += 1
                    failed += obj.status == Status.FAILED
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
