"""The OpenAI error dialect for everything under /openai/, which its SDK parses:
`{"error": {"message", "type", "param", "code"}}`, and 400 for invalid input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder

from api_adapter.dialects import HTTP_CODES, Answer, register
from offpeak import errors
from offpeak.schemas.strict_json import dotted

PREFIX = "/openai/"
TYPES = {401: "authentication_error", 402: "insufficient_quota", 429: "rate_limit_error"}


def error_body(
    status: int, code: str, message: str, param: str | None = None, **extra: object
) -> dict[str, Any]:
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}
    return jsonable_encoder(body)


class OpenAIDialect:
    prefix: str = PREFIX
    challenge: str | None = "Bearer"

    def offpeak_error(self, exc: errors.OffpeakError, status: int) -> Answer:
        if isinstance(exc, errors.BatchInputInvalid):
            line = exc.problems[0]["line"]
            body = error_body(
                400, exc.code, exc.message, "input_file_id", line=line, errors=exc.problems
            )
            return Answer(400, body)
        status = 400 if status == 422 else status
        return Answer(status, error_body(status, exc.code, exc.message))

    def validation_error(self, problems: Sequence[Mapping[str, Any]]) -> Answer:
        first = problems[0]
        where = [str(p) for p in first.get("loc", ())[1:]]  # without body/query/path
        message = f"{'.'.join(where)}: {first['msg']}" if where else str(first["msg"])
        return Answer(400, error_body(400, "invalid_request", message, ".".join(where) or None))

    def http_error(self, status: int, detail: Any) -> Answer:
        return Answer(status, error_body(status, HTTP_CODES.get(status, "http_error"), str(detail)))

    def unsafe_json(self, exc: errors.UnsafeJson, where: str) -> Answer:
        return Answer(400, error_body(400, exc.code, exc.message, dotted(exc.loc) or None))

    def unavailable(self, outage: errors.DependencyUnavailable) -> Answer:
        return Answer(503, error_body(503, outage.code, outage.message))


DIALECT = register(OpenAIDialect())
