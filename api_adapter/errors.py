"""Core exceptions and validation failures as HTTP responses with a machine-readable code."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from offpeak import errors

STATUS: list[tuple[type[errors.OffpeakError], int]] = [
    (errors.UnknownModel, 422),
    (errors.InvalidInput, 422),
    (errors.AuthenticationError, 401),
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


def status_of(exc: errors.OffpeakError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def error_response(status: int, code: str, detail: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


async def _offpeak_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.OffpeakError)
    status = status_of(exc)
    if status == 422:
        # Keep FastAPI's validation shape, so clients parse one format for every 422.
        detail: object = [{"loc": ["body"], "msg": exc.message, "type": exc.code}]
        if isinstance(exc, errors.UnknownModel):
            detail = [
                {"loc": ["body", "request_body", "model"], "msg": exc.message, "type": exc.code}
            ]
        return error_response(422, exc.code, detail)
    return error_response(status, exc.code, exc.message)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {key: err[key] for key in ("loc", "msg", "type") if key in err} for err in exc.errors()
    ]
    return error_response(422, "validation_error", jsonable_encoder(detail))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(
        exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), exc.detail
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.OffpeakError, _offpeak_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
