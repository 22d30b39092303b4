"""OpenAI API objects built from state rows (pure: no I/O)."""

from __future__ import annotations

from offpeak.schemas import (
    FileObject,
    OpenAIBatchCounts,
    OpenAIBatchObject,
    OpenAIBatchUsage,
)
from offpeak.state.models import Batch, OpenAIBatch, OpenAIFile
from offpeak.state.openai import Tally


def file_object(row: OpenAIFile) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
    )


def openai_status(extra: OpenAIBatch, tally: Tally) -> str:
    """The batch's OpenAI status: final once its files are written; before that
    `cancelling` after a cancel, `finalizing` once every request has ended, else
    `in_progress` (lines are validated when the batch is created)."""
    if extra.status:
        return extra.status
    if extra.cancelling_at is not None:
        return "cancelling"
    return "finalizing" if tally.pending == 0 else "in_progress"


def openai_batch_object(batch: Batch, extra: OpenAIBatch, tally: Tally) -> OpenAIBatchObject:
    status = openai_status(extra, tally)
    ended = {f"{status}_at": extra.ended_at} if extra.ended_at is not None else {}
    return OpenAIBatchObject(
        id=batch.id,
        endpoint=extra.endpoint,
        model=extra.model,
        input_file_id=extra.input_file_id,
        completion_window=extra.completion_window,
        status=status,
        output_file_id=extra.output_file_id,
        error_file_id=extra.error_file_id,
        created_at=batch.created_at,
        in_progress_at=batch.created_at,
        expires_at=batch.expires_at,
        finalizing_at=extra.finalizing_at
        if extra.finalizing_at is not None
        else (tally.last_ended_at if status == "finalizing" else None),
        cancelling_at=extra.cancelling_at
        if extra.cancelling_at is not None
        else (extra.ended_at if status == "cancelled" else None),
        request_counts=OpenAIBatchCounts(
            total=tally.total,
            completed=tally.completed,
            failed=tally.failed + tally.cancelled,
        ),
        usage=OpenAIBatchUsage(
            input_tokens=tally.prompt_tokens,
            output_tokens=tally.completion_tokens,
            total_tokens=tally.prompt_tokens + tally.completion_tokens,
        ),
        metadata=batch.meta or None,
        **ended,
    )
