"""Anthropic's error shape for everything under /anthropic/, which its SDK parses:
`{"type": "error", "error": {"type": "invalid_request_error" | ..., "message"}}`, with
400 for every invalid input (what FastAPI and the core call 422)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from offpeak.schemas.anthropic import ErrorDetail, ErrorResponse

PREFIX = "/anthropic/"
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def is_anthropic(path: str) -> bool:
    return path.startswith(PREFIX)


def status(status: int) -> int:
    """The status Anthropic answers: 400 where FastAPI and the core say 422."""
    return 400 if status == 422 else status


def error_body(status_code: int, message: str) -> dict[str, object]:
    status_code = status(status_code)
    kind = TYPES.get(status_code, "api_error" if status_code >= 500 else "invalid_request_error")
    return ErrorResponse(error=ErrorDetail(type=kind, message=message)).model_dump()


def error_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(status_code, message), status_code=status(status_code))
