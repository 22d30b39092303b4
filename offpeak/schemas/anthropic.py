"""Anthropic's Message Batches API, as far as a text-only batch engine honours it: the
create body, the Messages params of each entry, the batch object, and the result lines.

Shapes follow Anthropic's public reference, so the official SDK parses what we answer;
the params refuse what the engine cannot do (tools, images, thinking, streaming) with a
message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from offpeak.schemas.common import Strict

CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_STOP_SEQUENCES = 4  # what the engine's chat request takes (OpenAI's limit)
# Messages features a text-only engine cannot honour: refused by name, never ignored.
UNSUPPORTED_PARAMS = ("tools", "tool_choice", "thinking", "container", "mcp_servers")


# --- params: one Messages API request ----------------------------------------------------


class TextBlock(Strict):
    """A text content block (the only kind a text model can read)."""

    type: Literal["text"]
    text: str
    # Prompt caching and citations are hints the engine has no use for: accepted, unused.
    cache_control: dict[str, Any] | None = None
    citations: list[Any] | None = None


class Message(Strict):
    """One turn of the conversation."""

    role: Literal["user", "assistant"]
    content: str | list[TextBlock] = Field(description="Plain text, or a list of text blocks.")

    def text_blocks(self) -> list[TextBlock]:
        if isinstance(self.content, str):
            return [TextBlock(type="text", text=self.content)]
        return self.content


class RequestMetadata(Strict):
    user_id: str | None = Field(None, description="An opaque id of the end user.")


class MessageParams(Strict):
    """The `params` of one entry: a Messages API request."""

    model: Annotated[str, Field(min_length=1, description="Name of a served model.")]
    max_tokens: Annotated[int, Field(ge=1, description="Most tokens to generate.")]
    messages: Annotated[
        list[Message], Field(min_length=1, description="Alternating turns, the first `user`.")
    ]
    system: str | list[TextBlock] | None = Field(None, description="The system prompt.")
    temperature: Annotated[float | None, Field(ge=0, le=1)] = None
    top_p: Annotated[float | None, Field(gt=0, le=1)] = None
    top_k: Annotated[int | None, Field(ge=1)] = None
    stop_sequences: Annotated[list[str] | None, Field(max_length=MAX_STOP_SEQUENCES)] = None
    metadata: RequestMetadata | None = None
    stream: bool | None = Field(None, description="Must be false or absent in a batch.")
    service_tier: str | None = Field(None, description="Accepted and ignored: batches wait.")

    @field_validator("stream")
    @classmethod
    def _not_streamed(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("stream must be false or absent in a batch: results are collected")
        return value

    @field_validator("stop_sequences")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value and not all(value):
            raise ValueError("stop sequences must not be empty")
        return value


class BatchEntry(BaseModel):
    """One entry of `requests`; checked as a whole by offpeak.anthropic, so that every
    problem of every entry is named in one answer."""

    custom_id: Any = Field(
        description="Your id of the request, unique in the batch: 1-64 of [a-zA-Z0-9_-]."
    )
    params: Any = Field(description="A Messages API request (see `MessageParams`).")


class MessageBatchCreate(BaseModel):
    """The body of `POST /v1/messages/batches`."""

    requests: Annotated[list[BatchEntry], Field(min_length=1, description="The requests.")]


# --- the batch object ----------------------------------------------------------------------

ProcessingStatus = Literal["in_progress", "canceling", "ended"]


class MessageBatchRequestCounts(BaseModel):
    processing: int = Field(description="Requests not ended yet.")
    succeeded: int = Field(description="Requests answered.")
    errored: int = Field(description="Requests that failed.")
    canceled: int = Field(description="Requests cancelled before they ran.")
    expired: int = Field(description="Requests whose batch expired before they ran.")


class MessageBatch(BaseModel):
    """A message batch, as Anthropic's API answers it."""

    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: ProcessingStatus
    request_counts: MessageBatchRequestCounts
    created_at: str = Field(description="RFC 3339.")
    expires_at: str = Field(description="RFC 3339: 24 hours after creation.")
    ended_at: str | None = None
    cancel_initiated_at: str | None = None
    archived_at: str | None = None
    results_url: str | None = Field(None, description="Where the results are, once ended.")


class MessageBatchList(BaseModel):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(BaseModel):
    id: str
    type: Literal["message_batch_deleted"] = "message_batch_deleted"


# --- result lines ---------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class OutputText(BaseModel):
    type: Literal["text"] = "text"
    text: str


class MessageOut(BaseModel):
    """The `message` of a succeeded line."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[OutputText]
    stop_reason: StopReason
    stop_sequence: str | None
    usage: Usage


class ErrorDetail(BaseModel):
    type: str = Field(description="invalid_request_error, api_error, ...")
    message: str


class ErrorResponse(BaseModel):
    """Anthropic's error body, on the routes and inside errored lines."""

    type: Literal["error"] = "error"
    error: ErrorDetail


class Succeeded(BaseModel):
    type: Literal["succeeded"] = "succeeded"
    message: MessageOut


class Errored(BaseModel):
    type: Literal["errored"] = "errored"
    error: ErrorResponse


class Canceled(BaseModel):
    type: Literal["canceled"] = "canceled"


class Expired(BaseModel):
    type: Literal["expired"] = "expired"


class ResultLine(BaseModel):
    """One line of a batch's results."""

    custom_id: str
    result: Succeeded | Errored | Canceled | Expired
