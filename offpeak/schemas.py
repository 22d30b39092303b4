"""The shared schemas: API bodies, stored rows and Parquet segments come from here.

The HTTP API validates with these models, the state layer stores their JSON, and the
Parquet segment schema is derived from :class:`SegmentRow`, so the three cannot drift.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from offpeak.ids import ID_PATTERN

MAX_COMPLETION_TOKENS = 16_384
DEFAULT_MAX_TOKENS = 4_096


class Status(StrEnum):
    """Lifecycle of requests and batches alike."""

    # A batch whose dataset is still being registered: its requests wait, unscheduled.
    VALIDATING = "validating"
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


# --- the embeddings request body ------------------------------------------------------

MAX_EMBEDDING_INPUTS = 2_048  # OpenAI's limit on the items of one request

_Text = Annotated[str, Field(strict=True, min_length=1)]
_TokenIds = Annotated[list[Annotated[int, Field(strict=True, ge=0)]], Field(min_length=1)]
_Many = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
EmbeddingInput = (
    _Text | Annotated[list[_Text], _Many] | _TokenIds | Annotated[list[_TokenIds], _Many]
)


class EmbeddingRequest(_Strict):
    """An OpenAI embeddings request (`POST /v1/embeddings`).

    Unknown fields are refused, as OpenAI refuses them ("Unrecognized request argument").
    """

    model: Annotated[str, Field(min_length=1, description="Name of a served embedding model.")]
    input: EmbeddingInput = Field(
        description="A text, a list of texts, a list of token ids, or a list of such lists; "
        "nothing empty, at most 2048 items."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes."
    )
    dimensions: Annotated[
        int | None,
        Field(
            ge=1,
            description="Length of the vectors; other than the model's own only for models "
            "trained to be shortened (matryoshka).",
        ),
    ] = None
    user: str | None = Field(None, description="End-user identifier, kept for the caller.")

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_clear_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One message instead of one per member of the union.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "input must be a non-empty string, a list of non-empty strings, a list of "
                "token ids (integers >= 0), or a list of such lists, with 1 to "
                f"{MAX_EMBEDDING_INPUTS} items"
            ) from None

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list, one item per vector to return."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return value  # type: ignore[return-value]


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


class CarbonObject(BaseModel):
    """The carbon footprint of a request or batch that ran (an offpeak extension)."""

    gco2e: float = Field(description="Estimated emissions of running it, in grams CO2e.")
    baseline_gco2e: float = Field(
        description="The same work run at submission time in the default pool."
    )
    saved_pct: float | None = Field(description="100 x (baseline - gco2e) / baseline.")
    zone: str = Field(description="Grid zone(s) it ran in, comma-separated when several.")
    ran_at: int = Field(description="When it (its first job) started, unix seconds.")

    @classmethod
    def of(cls, gco2e: float, baseline: float, zone: str, ran_at: int) -> CarbonObject:
        saved = round(100.0 * (baseline - gco2e) / baseline, 2) if baseline > 0 else None
        return cls(gco2e=gco2e, baseline_gco2e=baseline, saved_pct=saved, zone=zone, ran_at=ran_at)


class RequestObject(StatusObject):
    """A request with its body and, once ended, its result or error."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    request_body: dict[str, Any] | None = None
    result_body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    completion_window: str = "24h"
    webhook: str | None = None
    batch_id: str | None = None
    carbon: CarbonObject | None = None


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
    carbon: CarbonObject | None = None


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


# --- datasets ------------------------------------------------------------------------------

DatasetFormat = Literal["parquet", "csv", "jsonl"]


class DatasetMapping(_Strict):
    """How the columns of a dataset become chat requests (`POST /v1/datasets`, query string).

    Each row becomes one request of one new batch: the prompt column as the user message
    (after an optional system prompt), or a messages column holding whole conversations.
    """

    model: Annotated[str, Field(min_length=1, description="Model every row is sent to.")]
    prompt_column: str | None = Field(
        None, description="Column holding each row's user message (text)."
    )
    messages_column: str | None = Field(
        None,
        description="Instead of prompt_column: a column holding each row's conversation, "
        "a list of {role, content} objects (or its JSON text).",
    )
    system_prompt: str | None = Field(
        None, description="System message put before each row's prompt (prompt_column only)."
    )
    id_column: str | None = Field(
        None,
        description="Column identifying each row, kept as metadata.custom_id and joined back "
        "in the results; unique. Without it, custom_id is the row number (from 0).",
    )
    parameter_columns: list[str] = Field(
        default_factory=list,
        description="Per-row sampling parameters: `field=column` (e.g. `temperature=temp`) or "
        "just `field` for a column of that name; a null cell takes the global value.",
    )
    max_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(gt=0, le=1)] = None
    seed: int | None = None
    completion_window: str = Field("24h", description="Deadline after submission, e.g. 24h.")
    name: str | None = Field(None, description="Name of the batch (in its metadata).")
    format: DatasetFormat | None = Field(
        None, description="parquet, csv or jsonl; guessed from the file name or its bytes."
    )

    @field_validator("completion_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        window_seconds(value)
        return value

    @model_validator(mode="after")
    def _one_text_source(self) -> DatasetMapping:
        if (self.prompt_column is None) == (self.messages_column is None):
            raise ValueError("give exactly one of prompt_column or messages_column")
        if self.messages_column is not None and self.system_prompt is not None:
            raise ValueError("system_prompt goes with prompt_column; put it in the messages")
        return self

    def parameters(self) -> dict[str, str]:
        """Per-row parameter field -> the column holding it."""
        pairs = (entry.partition("=") for entry in self.parameter_columns)
        return {field.strip(): (column.strip() or field.strip()) for field, _, column in pairs}

    def global_parameters(self) -> dict[str, Any]:
        """The sampling parameters given for every row."""
        values = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        return {name: value for name, value in values.items() if value is not None}


# --- Parquet segments -----------------------------------------------------------------------


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


# --- the OpenAI Batch API (served under /openai/v1) ---------------------------------------

OPENAI_ENDPOINTS: dict[str, Literal["chat", "embed"]] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embed",
}
"""The batch endpoints served, and the kind of model each one runs."""

OpenAIMetadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16, description="Up to 16 string pairs (keys up to 64 characters)."),
]


class BatchInputLine(_Strict):
    """One line of a batch input file."""

    custom_id: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="The caller's id of the line, unique in the file; outputs carry it."
    )
    method: Literal["POST"]
    url: str = Field(description="Must equal the batch's endpoint.")
    body: dict[str, Any] = Field(description="The request body for that endpoint.")


class OpenAIBatchCreate(_Strict):
    """Body of `POST /openai/v1/batches`."""

    input_file_id: Annotated[str, Field(min_length=1, description="An uploaded batch file.")]
    endpoint: str = Field(description="`/v1/chat/completions` or `/v1/embeddings`.")
    completion_window: str = Field(description="Deadline after creation: `24h` (or 1m-72h).")
    metadata: OpenAIMetadata | None = None

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
