"""Anthropic's error shape (api_adapter/anthropic/errors.py) as an error dialect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from api_adapter.anthropic.errors import PREFIX, error_body, status
from api_adapter.dialects import Answer, register
from offpeak import errors
from offpeak.schemas.strict_json import dotted


def _answer(status_code: int, message: str) -> Answer:
    return Answer(status(status_code), error_body(status_code, message))


class AnthropicDialect:
    prefix: str = PREFIX
    challenge: str | None = None

    def offpeak_error(self, exc: errors.OffpeakError, status: int) -> Answer:
        return _answer(status, exc.message)

    def validation_error(self, problems: Sequence[Mapping[str, Any]]) -> Answer:
        first = problems[0]
        if first.get("type") == "missing" and tuple(first.get("loc", ()))[:1] == ("header",):
            # As Anthropic words it: "anthropic-version: header is required".
            return _answer(400, f"{first['loc'][-1]}: header is required")
        where = [str(p) for p in first.get("loc", ())[1:]]
        message = str(first["msg"]).removeprefix("Value error, ")
        return _answer(400, f"{'.'.join(where)}: {message}" if where else message)

    def http_error(self, status: int, detail: Any) -> Answer:
        return _answer(status, str(detail))

    def unsafe_json(self, exc: errors.UnsafeJson, where: str) -> Answer:
        where_ = dotted(exc.loc)
        return _answer(400, f"{where_}: {exc.message}" if where_ else exc.message)

    def unavailable(self, outage: errors.DependencyUnavailable) -> Answer:
        return _answer(503, outage.message)


DIALECT = register(AnthropicDialect())
