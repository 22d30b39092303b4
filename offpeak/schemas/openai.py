"""The OpenAI Batch API's bodies and objects (served under /openai/v1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from offpeak.schemas.common import Strict, window_seconds

OPENAI_ENDPOINTS: dict[str, Literal["chat", "embed"]] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embed",
}
"""The batch endpoints served, and the kind of model each one runs."""

OpenAIMetadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16, description="Up to 16 string pairs (keys up to 64 characters)."),
]


class BatchInputLine(Strict):
    """One line of a batch input file."""

    custom_id: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="The caller's id of the line, unique in the file; outputs carry it."
    )
    method: Literal["POST"]
    url: str = Field(description="Must equal the batch's endpoint.")
    body: dict[str, Any] = Field(description="The request body for that endpoint.")


EXPIRES_AFTER_SECONDS = (3600, 30 * 86400)
"""The lifetimes OpenAI accepts for `expires_after`/`output_expires_after`: 1 h to 30 days."""


class ExpiresAfter(Strict):
    """How long a file lives: OpenAI's `expires_after` (`output_expires_after` on a batch)."""

    anchor: Literal["created_at"] = Field(
        description="From when: `created_at`, the file's creation (a batch's output files "
        "are created when it ends)."
    )
    seconds: int = Field(
        ge=EXPIRES_AFTER_SECONDS[0],
        le=EXPIRES_AFTER_SECONDS[1],
        description="Seconds after the anchor: 3600 (1 hour) to 2592000 (30 days).",
    )


class OpenAIBatchCreate(Strict):
    """Body of `POST /openai/v1/batches`."""

    input_file_id: Annotated[str, Field(min_length=1, description="An uploaded batch file.")]
    endpoint: str = Field(description="`/v1/chat/completions` or `/v1/embeddings`.")
    completion_window: str = Field(description="Deadline after creation: `24h` (or 1m-72h).")
    metadata: OpenAIMetadata | None = None
    output_expires_after: ExpiresAfter | None = Field(
        None,
        description="How long the output and error files, the results and the request bodies "
        "live after the batch ends (else OFFPEAK_RESULTS_RETENTION).",
    )

    @field_validator("endpoint")
    @classmethod
    def _served(cls, value: str) -> str:
        if value not in OPENAI_ENDPOINTS:
            served = ", ".join(OPENAI_ENDPOINTS)
            raise ValueError(f"endpoint {value!r} is not supported here; supported: {served}")
        return value

    @field_validator("completion_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        window_seconds(value)
        return value


class FileObject(BaseModel):
    """A file of the OpenAI-compatible API."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class OpenAIBatchCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = Field(0, description="Failed, expired and cancelled requests.")


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class OpenAIBatchUsage(BaseModel):
    """Tokens of the batch's finished requests."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


OpenAIBatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class OpenAIBatchObject(BaseModel):
    """A batch as the OpenAI Batch API shows it; the same batch as `/v1/batches/{id}`."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: dict[str, Any] | None = Field(
        None, description="Always null: invalid input files are refused when the batch is created."
    )
    input_file_id: str
    completion_window: str
    status: OpenAIBatchStatus
    output_file_id: str | None = Field(None, description="Null when no request completed.")
    error_file_id: str | None = Field(None, description="Null when no request failed.")
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: OpenAIBatchCounts
    usage: OpenAIBatchUsage | None = None
    metadata: dict[str, Any] | None = None


class OpenAIBatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIBatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


# --- output and error file lines (as vLLM's BatchRequestOutput) ---------------------------


class OpenAIErrorDetail(BaseModel):
    """OpenAI's error object, as its SDK parses it."""

    message: str
    type: Literal["invalid_request_error", "server_error"] = Field(
        description="`invalid_request_error` for a request the engine refused, else `server_error`."
    )
    param: str | None = None
    code: str


class OpenAIErrorBody(BaseModel):
    """The body of a failed response: `{"error": {...}}`."""

    error: OpenAIErrorDetail


class BatchLineResponse(BaseModel):
    """The response a line got, as the endpoint would have answered it."""

    status_code: int = Field(description="200, or 400/500 for a request that failed.")
    request_id: str = Field(description="Our id of the request the line became.")
    body: dict[str, Any] | OpenAIErrorBody = Field(
        description="The endpoint's response (a chat completion or an embedding list), "
        "or the error."
    )


class BatchLineError(BaseModel):
    """Why a line got no response: it never ran."""

    code: Literal["batch_expired", "batch_cancelled"]
    message: str


class BatchOutputLine(BaseModel):
    """One line of a batch's output file (a response with status 200) or error file
    (any other response, or none and an `error`)."""

    id: str = Field(description="`batch_req_` and the request's id.")
    custom_id: str | None = Field(description="The input line's custom_id.")
    response: BatchLineResponse | None
    error: BatchLineError | None
