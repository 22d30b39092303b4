"""The error answers each router declares in OpenAPI, in its own dialect.

Every status a route can answer is in the document, with the body's shape, so that
generated clients and schema-driven fuzzers (schemathesis in `make test`) can hold the
API to it. The statuses are declared per router: each router's routes share the
dependencies (auth, body limits, the database and the store) that produce them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from offpeak.schemas.anthropic import ErrorResponse as AnthropicError


class ExxaError(BaseModel):
    """An error of the EXXA routes: FastAPI's shape plus a machine-readable code."""

    detail: Any = Field(description="A message, or a list of {loc, msg, type} for 422.")
    code: str = Field(description="Machine-readable error code, e.g. `request_not_found`.")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """An error of the OpenAI-compatible routes, in the shape the OpenAI SDK parses."""

    error: OpenAIErrorDetail


_MEANINGS = {
    400: "Invalid input",
    401: "Missing, unknown or revoked API key",
    402: "Not enough credits",
    403: "Not allowed for this key",
    404: "No such object for this key",
    405: "Method not allowed",
    409: "Conflict with the object's state, or an idempotency key reused with another body",
    413: "Body over the size limit",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "A dependency (database or object store) is unavailable; retry after `Retry-After`",
}


def declared(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": model, "description": _MEANINGS[status]} for status in sorted(statuses)
    }


_COMMON = (401, 403, 404, 405, 409, 413, 415, 503)
EXXA = declared(ExxaError, *_COMMON, 400, 402, 422)  # 400: a body that is not JSON
OPENAI = declared(OpenAIError, *_COMMON, 400, 402)
ANTHROPIC = declared(AnthropicError, *_COMMON, 400, 402)
SERVICE = declared(ExxaError, 401, 405, 503)
