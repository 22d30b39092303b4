"""Core exceptions and validation failures as HTTP responses with a machine-readable code."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api_adapter.outages import DATABASE_DOWN, RETRY_AFTER_SECONDS, Outages, unavailable
from offpeak import errors
from offpeak.schemas.strict_json import dotted

STATUS: list[tuple[type[errors.OffpeakError], int]] = [
    (errors.UnknownModel, 422),
    (errors.TooLarge, 413),
    (errors.InvalidInput, 422),
    (errors.AuthenticationError, 401),
    (errors.Forbidden, 403),
    (errors.InsufficientCredits, 402),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.StorageError, 503),
]
HTTP_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


# Routes of the OpenAI-compatible API answer errors in OpenAI's shape, which its SDK
# parses: {"error": {"message", "type", "param", "code"}}, and 400 for invalid input.
OPENAI_PREFIX = "/openai/"
OPENAI_TYPES = {401: "authentication_error", 402: "insufficient_quota", 429: "rate_limit_error"}


def status_of(exc: errors.OffpeakError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def is_openai(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def openai_error_body(
    status: int, code: str, message: str, param: str | None = None, **extra: object
) -> dict[str, object]:
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}


def openai_error(
    status: int, code: str, message: str, param: str | None = None, **extra: object
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = openai_error_body(status, code, message, param, **extra)
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def error_response(status: int, code: str, detail: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def unsafe_json_error(
    path: str, exc: errors.UnsafeJson, *, where: str = "body"
) -> tuple[int, dict[str, object]]:
    """The answer to a body or query value no store can keep: 422 naming its location
    (``where`` is ``body`` or ``query``), 400 on the OpenAI routes."""
    if is_openai(path):
        return 400, openai_error_body(400, exc.code, exc.message, dotted(exc.loc) or None)
    detail = [{"loc": [where, *exc.loc], "msg": exc.message, "type": exc.code}]
    return 422, {"detail": detail, "code": exc.code}


def _unavailable_response(request: Request, outage: errors.DependencyUnavailable) -> JSONResponse:
    outages: Outages = request.app.state.outages
    outages.down(outage, getattr(request.app.state, "services", None))
    if is_openai(request.url.path):
        response = openai_error(503, outage.code, outage.message)
    else:
        response = error_response(503, outage.code, outage.message)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy's and botocore's errors: 503 when the service is out of reach."""
    if (outage := unavailable(exc)) is None:
        raise exc  # a bug, not an outage: the 500 handler logs its traceback
    return _unavailable_response(request, outage)


async def _offpeak_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.OffpeakError)
    if isinstance(exc, errors.StorageError | errors.DependencyUnavailable) and (
        outage := unavailable(exc)
    ):
        return _unavailable_response(request, outage)
    if isinstance(exc, errors.UnsafeJson):
        status, body = unsafe_json_error(request.url.path, exc)
        return JSONResponse(body, status_code=status)
    status = status_of(exc)
    if is_openai(request.url.path):
        if isinstance(exc, errors.BatchInputInvalid):
            first = exc.problems[0]
            return openai_error(
                400, exc.code, exc.message, "input_file_id", line=first["line"], errors=exc.problems
            )
        return openai_error(400 if status == 422 else status, exc.code, exc.message)
    if status == 422:
        # Keep FastAPI's validation shape, so clients parse one format for every 422.
        detail: object = [{"loc": ["body"], "msg": exc.message, "type": exc.code}]
        if isinstance(exc, errors.UnknownModel):
            detail = [
                {"loc": ["body", "request_body", "model"], "msg": exc.message, "type": exc.code}
            ]
        return error_response(422, exc.code, detail)
    return error_response(status, exc.code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if is_openai(request.url.path):
        first = exc.errors()[0]
        where = [str(p) for p in first.get("loc", ())[1:]]  # without body/query/path
        message = f"{'.'.join(where)}: {first['msg']}" if where else str(first["msg"])
        return openai_error(400, "invalid_request", message, ".".join(where) or None)
    detail = [
        {key: err[key] for key in ("loc", "msg", "type") if key in err} for err in exc.errors()
    ]
    return error_response(422, "validation_error", jsonable_encoder(detail))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if is_openai(request.url.path):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return openai_error(exc.status_code, code, str(exc.detail))
    return error_response(
        exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), exc.detail
    )


def install(app: FastAPI) -> None:
    app.state.outages = Outages()
    app.add_exception_handler(errors.OffpeakError, _offpeak_error)
    for driver_error in (DBAPIError, *DATABASE_DOWN, BotoCoreError):
        app.add_exception_handler(driver_error, _dependency_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
