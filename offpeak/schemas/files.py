"""Rows of the Parquet files in object storage: segments, chunk results, job manifests.

Their Arrow schemas derive from these models (``offpeak.schemas.arrow.arrow_schema``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SegmentRow(BaseModel):
    """One accepted request as sealed into a Parquet segment of object storage."""

    id: str
    key_id: str
    model: str
    created_at: int
    expires_at: int
    request_body: str = Field(
        description="The request body as JSON text: chat-completions or embeddings, as the "
        "model's kind takes."
    )
    metadata: str = Field(description="The caller's metadata as JSON text.")


class ResultRow(BaseModel):
    """One request's outcome as written in a chunk's result Parquet file."""

    id: str
    status: str = Field(description="completed or failed.")
    result_body: str = Field(
        description="The chat.completion or embeddings response as JSON text; '' if failed."
    )
    error_code: str = Field(description="'' when completed.")
    error_message: str = Field(description="'' when completed.")
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ManifestRow(BaseModel):
    """One request of a job's manifest: its id and the segment holding its body."""

    id: str
    segment: str
