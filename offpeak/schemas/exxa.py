"""EXXA's request and batch bodies and objects (the API under /v1), and model cards."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, HttpUrl, field_validator

from offpeak.ids import ID_PATTERN
from offpeak.schemas.chat import ChatCompletionRequest
from offpeak.schemas.common import Strict, window_seconds
from offpeak.schemas.status import Status


class RequestCreate(Strict):
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


class BatchCreate(Strict):
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

    @classmethod
    def of(cls, row: Any) -> StatusObject:
        """From a stored request or batch (anything with these attributes)."""
        return cls(
            id=row.id,
            status=Status(row.status),
            created_at=row.created_at,
            expires_at=row.expires_at,
            in_progress_at=row.in_progress_at,
            ended_at=row.ended_at,
        )


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


# When the scheduler's latest plan expects the work to run (an offpeak extension).
EXPECTED_START = (
    "When the scheduler's latest plan expects its (next) waiting requests to start, unix "
    "seconds; null when not planned (not sealed yet, or ended)."
)
EXPECTED_COMPLETION = (
    "When the scheduler's latest plan expects its last request to end, unix seconds; null "
    "while some of its work is not planned or the plan has no run length for it."
)


class RequestProgress(RequestObject):
    """`GET /v1/requests/{id}`: the request with its expected times (results lines are
    plain request objects: their requests have ended)."""

    expected_start_at: int | None = Field(None, description=EXPECTED_START)
    expected_completion_at: int | None = Field(None, description=EXPECTED_COMPLETION)


class RequestCounts(BaseModel):
    """How many of a batch's requests are in each status (an offpeak extension)."""

    total: int = 0
    registered: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class BatchUsage(BaseModel):
    """Tokens of the batch's requests that have run so far (an offpeak extension)."""

    prompt_tokens: int = Field(0, description="Prompt tokens of its requests that ran.")
    completion_tokens: int = Field(0, description="Tokens those requests generated.")


class BatchObject(StatusObject):
    """A batch of requests."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage = Field(default_factory=BatchUsage)
    carbon: CarbonObject | None = None
    expected_start_at: int | None = Field(None, description=EXPECTED_START)
    expected_completion_at: int | None = Field(None, description=EXPECTED_COMPLETION)


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
