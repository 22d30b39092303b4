"""The results of an ended Anthropic message batch, streamed as JSONL.

Composed on each read from the state database and the chunk files, page by page, never
written (reads never write): one :class:`~offpeak.schemas.anthropic.ResultLine` per
request, in input order; a cancelled batch keeps what finished before it was cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic_core import to_json

from offpeak.anthropic import result_line
from offpeak.publish.ended import ended_pages
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.storage import ObjectStore


def result_lines(db: Database, store: ObjectStore, batch: Batch) -> Iterator[bytes]:
    """The JSONL lines of ``batch``'s results, a page of them per chunk."""
    for page in ended_pages(db, store, batch):
        out = []
        for r in page:
            completion = json.loads(r.result_body) if r.result_body else None
            line = result_line(
                r.id, r.custom_id, r.status, completion, r.error_code, r.error_message
            )
            out.append(to_json(line) + b"\n")
        yield b"".join(out)
