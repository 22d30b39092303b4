"""The shared schemas: API bodies, stored rows and Parquet segments come from here.

The HTTP API validates with these models, the state layer stores their JSON, and the
Parquet segment schema is derived from :class:`SegmentRow`, so the three cannot drift.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from offpeak.ids import ID_PATTERN

MAX_COMPLETION_TOKENS = 16_384
DEFAULT_MAX_TOKENS = 4_096


class Status(StrEnum):
    """Lifecycle of requests and batches alike."""

    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class _Strict(BaseModel):
    # Unknown fields are refused with a clear 422 rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


# --- the chat-completions request body ------------------------------------------------


class TextPart(_Strict):
    """One text part of a message's content (the only kind a text model can honour)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Plain text, or a list of text parts.")
    name: str | None = Field(None, description="Optional name of the participant.")


class JsonSchemaSpec(_Strict):
    """The `json_schema` member of a structured-output response format."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema to follow.")
    strict: bool | None = None


class TextFormat(_Strict):
    type: Literal["text"]


class JsonObjectFormat(_Strict):
    type: Literal["json_object"]


class JsonSchemaFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class ChatCompletionRequest(_Strict):
    """An OpenAI chat-completions request, as far as a batch engine can honour it."""

    model: Annotated[str, Field(min_length=1, description="Name of a served model.")]
    messages: Annotated[list[ChatMessage], Field(min_length=1, description="The conversation.")]
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: Annotated[int, Field(ge=1, le=128, description="Number of choices to generate.")] = 1
    max_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    logprobs: bool = False
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    stream: bool = Field(False, description="Must be false: results are collected, not streamed.")
    user: str | None = Field(None, description="End-user identifier, kept for the caller.")

    @field_validator("stream")
    @classmethod
    def _no_streaming(cls, value: bool) -> bool:
        if value:
            raise ValueError("stream=true is not supported by a batch API; results are collected")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise ValueError("max_tokens and max_completion_tokens disagree; send one of them")
        return self


# --- completion windows -----------------------------------------------------------------

_WINDOW = re.compile(r"^(\d+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 72 * 3600


def window_seconds(window: str) -> int:
    """Seconds in a completion window such as ``24h``, ``10m`` or ``3d``."""
    match = _WINDOW.match(window)
    if not match:
        raise ValueError(f"completion_window {window!r} is not a duration like '24h' or '10m'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"completion_window {window!r} must be between 1m and 72h")
    return seconds


# --- EXXA request and batch objects --------------------------------------------------------


class RequestCreate(_Strict):
    """Body of `POST /v1/requests`."""

    request_body: ChatCompletionRequest
    metadata: dict[str, Any] | None = Field(None, description="Free-form caller data.")
    completion_window: str = Field("24h", description="Deadline after creation, e.g. 24h.")
    webhook: HttpUrl | None = Field(None, description="URL notified when the request ends.")

    @field_validator("completion_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        window_seconds(value)
        return value


RequestId = Annotated[str, Field(pattern=ID_PATTERN.pattern, description="A 24-hex-char id.")]


class BatchCreate(_Strict):
    """Body of `POST /v1/batches`."""

    requests_ids: Annotated[list[RequestId], Field(min_length=1, max_length=1_000_000)]
    metadata: dict[str, Any] | None = None
    webhook: HttpUrl | None = None

    @field_validator("requests_ids")
    @classmethod
    def _no_duplicates(cls, ids: list[str]) -> list[str]:
        seen: set[str] = set()
        duplicates = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        if duplicates:
            raise ValueError(f"duplicate request ids: {', '.join(duplicates[:10])}")
        return ids


class ErrorInfo(BaseModel):
    """Why a request failed."""

    code: str
    message: str


class StatusObject(BaseModel):
    """Status of a request or batch: the create response and the list lines."""

    id: str
    status: Status
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    ended_at: int | None = None


class RequestObject(StatusObject):
    """A request with its body and, once ended, its result or error."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    request_body: dict[str, Any] | None = None
    result_body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    completion_window: str = "24h"
    webhook: str | None = None
    batch_id: str | None = None


class RequestCounts(BaseModel):
    """How many of a batch's requests are in each status (an offpeak extension)."""

    total: int = 0
    registered: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class BatchObject(StatusObject):
    """A batch of requests."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)


class ModelCard(BaseModel):
    """One entry of `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "offpeak"
    kind: Literal["chat", "embed"] = "chat"
    stand_in: str | None = Field(
        None, description="Set when this name is served by another model's weights here."
    )
    context_length: int
    max_completion_tokens: int
    price_input_per_1m: float
    price_output_per_1m: float


# --- Parquet segments -----------------------------------------------------------------------


class SegmentRow(BaseModel):
    """One accepted request as sealed into a Parquet segment of object storage."""

    id: str
    key_id: str
    model: str
    created_at: int
    expires_at: int
    request_body: str = Field(description="The chat-completions body as JSON text.")
    metadata: str = Field(description="The caller's metadata as JSON text.")


class ResultRow(BaseModel):
    """One request's outcome as written in a chunk's result Parquet file."""

    id: str
    status: str = Field(description="completed or failed.")
    result_body: str = Field(description="The chat.completion object as JSON text; '' if failed.")
    error_code: str = Field(description="'' when completed.")
    error_message: str = Field(description="'' when completed.")
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ManifestRow(BaseModel):
    """One request of a job's manifest: its id and the segment holding its body."""

    id: str
    segment: str
