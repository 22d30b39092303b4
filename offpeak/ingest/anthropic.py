"""A checked Anthropic message batch registered as one of our batches: the entries'
engine requests written to Parquet segments page by page, then the batch and its
requests inserted in one transaction (offpeak.state.anthropic). All or nothing: the
segments of a batch that could not be inserted are removed again."""

from __future__ import annotations

from collections.abc import Sequence

from offpeak.anthropic import Entry
from offpeak.ids import new_id, new_ids
from offpeak.ingest.segments import encode_segment, segment_key
from offpeak.schemas import window_seconds
from offpeak.state.anthropic import COMPLETION_WINDOW, NewRequests, insert_batch
from offpeak.state.db import Database
from offpeak.state.models import Batch
from offpeak.state.requests import UnsealedRow
from offpeak.storage import ObjectStore

PAGE = 5000  # requests per segment


def register_batch(
    db: Database, store: ObjectStore, key_id: str, entries: Sequence[Entry], created_at: int
) -> Batch:
    """The new batch of the checked ``entries``, in their order."""
    expires_at = created_at + window_seconds(COMPLETION_WINDOW)
    pages: list[NewRequests] = []
    try:
        for start in range(0, len(entries), PAGE):
            page = entries[start : start + PAGE]
            # Ascending, so id order is input order (see offpeak.ids.new_ids).
            ids = new_ids(len(page)).to_pylist()
            rows = [
                UnsealedRow(
                    rid,
                    key_id,
                    entry.model,
                    created_at,
                    expires_at,
                    entry.body,
                    {"custom_id": entry.custom_id},
                )
                for rid, entry in zip(ids, page, strict=True)
            ]
            segment = segment_key(created_at)
            store.create(segment, encode_segment(rows))
            pages.append(
                NewRequests(
                    ids=ids,
                    custom_ids=[e.custom_id for e in page],
                    models=[e.model for e in page],
                    segment=segment,
                    est_tokens=[e.est_tokens for e in page],
                )
            )
        return insert_batch(
            db,
            batch_id=new_id(),
            key_id=key_id,
            created_at=created_at,
            expires_at=expires_at,
            pages=pages,
        )
    except BaseException:
        for written in pages:
            store.delete(written.segment)
        raise
