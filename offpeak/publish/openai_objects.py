"""OpenAI API objects built from state rows (pure: no I/O).

An OpenAI batch object is a view of one of our batches: the batch's own timestamps,
metadata and tally, plus what its OpenAI view adds (endpoint, files).
"""

from __future__ import annotations

from offpeak.schemas import (
    FileObject,
    OpenAIBatchCounts,
    OpenAIBatchObject,
    OpenAIBatchStatus,
    OpenAIBatchUsage,
    Status,
)
from offpeak.state.batches import Tally
from offpeak.state.models import Batch, OpenAIFile, OpenAIView


def file_object(row: OpenAIFile) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
        expires_at=row.expires_at,
    )


def _view(batch: Batch) -> OpenAIView:
    assert batch.openai is not None, "a batch made through the OpenAI API"
    return batch.openai


def final_status(batch: Batch, tally: Tally) -> OpenAIBatchStatus:
    """The OpenAI status of an ended batch once its files are written: `cancelled`
    after a cancel, `expired` when a request expired unrun, else `completed` (requests
    that failed are in the error file)."""
    if _view(batch).cancelling_at is not None or batch.status == Status.CANCELLED:
        return "cancelled"
    return "expired" if tally.expired else "completed"


def openai_status(batch: Batch, tally: Tally) -> OpenAIBatchStatus:
    """The batch's OpenAI status: final once its files are written; before that
    `cancelling` after a cancel, `finalizing` once every request has ended, else
    `in_progress` (lines are validated when the batch is created)."""
    view = _view(batch)
    if view.status:
        return view.status  # type: ignore[return-value]  # recorded by final_status
    if view.cancelling_at is not None or batch.status == Status.CANCELLED:
        return "cancelling"
    return "finalizing" if tally.pending == 0 else "in_progress"


def openai_batch_object(batch: Batch, tally: Tally) -> OpenAIBatchObject:
    view = _view(batch)
    status = openai_status(batch, tally)
    ended = {f"{status}_at": view.ended_at} if view.ended_at is not None else {}
    counts = tally.counts
    return OpenAIBatchObject(
        id=batch.id,
        endpoint=view.endpoint,
        model=view.model,
        input_file_id=view.input_file_id,
        completion_window=view.completion_window,
        status=status,
        output_file_id=view.output_file_id,
        error_file_id=view.error_file_id,
        created_at=batch.created_at,
        in_progress_at=batch.created_at,
        expires_at=batch.expires_at,
        finalizing_at=view.finalizing_at
        if view.finalizing_at is not None
        else (tally.last_ended_at if status == "finalizing" else None),
        cancelling_at=view.cancelling_at
        if view.cancelling_at is not None
        else (view.ended_at if status == "cancelled" else None),
        request_counts=OpenAIBatchCounts(
            total=counts.total,
            completed=counts.completed,
            failed=counts.failed + counts.cancelled,
        ),
        usage=OpenAIBatchUsage(
            input_tokens=tally.prompt_tokens,
            output_tokens=tally.completion_tokens,
            total_tokens=tally.prompt_tokens + tally.completion_tokens,
        ),
        metadata=batch.meta or None,
        **ended,
    )
