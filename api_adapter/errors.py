"""Core exceptions and validation failures as HTTP responses with a machine-readable code,
each in the error dialect of the API the path belongs to (api_adapter/dialects.py)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from api_adapter import dialects
from api_adapter.dialects import Answer, Dialect
from api_adapter.outages import DATABASE_DOWN, RETRY_AFTER_SECONDS, Outages, unavailable
from offpeak import errors

STATUS: list[tuple[type[errors.OffpeakError], int]] = [
    (errors.UnknownModel, 422),
    (errors.TooLarge, 413),
    (errors.InvalidInput, 422),
    (errors.AuthenticationError, 401),
    (errors.Forbidden, 403),
    (errors.InsufficientCredits, 402),
    (errors.NotFound, 404),
    (errors.ResultExpired, 410),
    (errors.Conflict, 409),
    (errors.StorageError, 503),
]


def status_of(exc: errors.OffpeakError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def _respond(dialect: Dialect, answer: Answer) -> JSONResponse:
    challenge = dialect.challenge if answer.status == 401 else None
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _unavailable_response(request: Request, outage: errors.DependencyUnavailable) -> JSONResponse:
    outages: Outages = request.app.state.outages
    outages.down(outage, getattr(request.app.state, "services", None))
    dialect = dialects.for_path(request.url.path)
    response = _respond(dialect, dialect.unavailable(outage))
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
    dialect = dialects.for_path(request.url.path)
    if isinstance(exc, errors.UnsafeJson):
        return _respond(dialect, dialect.unsafe_json(exc, "body"))
    response = _respond(dialect, dialect.offpeak_error(exc, status_of(exc)))
    if isinstance(exc, errors.IdempotencyKeyInProgress):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    dialect = dialects.for_path(request.url.path)
    return _respond(dialect, dialect.validation_error(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    dialect = dialects.for_path(request.url.path)
    response = _respond(dialect, dialect.http_error(exc.status_code, exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:  # Starlette names the first route's methods only
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (RFC 9110's `Allow`)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    app.state.outages = Outages()
    app.add_exception_handler(errors.OffpeakError, _offpeak_error)
    for driver_error in (DBAPIError, *DATABASE_DOWN, BotoCoreError):
        app.add_exception_handler(driver_error, _dependency_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
