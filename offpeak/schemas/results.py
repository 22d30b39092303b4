"""The results table: one row per request of a batch, as `GET /v1/batches/{id}/results`
serves it in Parquet. Its Arrow schema derives from :class:`ResultsRow`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from offpeak.schemas.status import Status


class ResultsRow(BaseModel):
    """One request's outcome, flattened from its result line (a `RequestObject`)."""

    custom_id: str | None = Field(
        description="The caller's `metadata.custom_id` (a dataset's id column), as text."
    )
    id: str = Field(description="The request id.")
    status: Status = Field(description="completed, failed or cancelled.")
    content: str | None = Field(description="The first choice's message content.")
    finish_reason: str | None = Field(description="The first choice's finish reason.")
    model: str | None = Field(description="The model that answered.")
    prompt_tokens: int | None = Field(description="Tokens of the prompt.")
    completion_tokens: int | None = Field(description="Tokens generated, all choices.")
    total_tokens: int | None = Field(description="Prompt and completion tokens.")
    error_code: str | None = Field(description="Why it failed (`ErrorCode`); null if it ran.")
    error_message: str | None = Field(description="What went wrong, for people.")
