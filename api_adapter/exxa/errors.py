"""The EXXA error dialect: FastAPI's shape plus a machine-readable code,
`{"detail": ..., "code": ...}`, and 422 for invalid input. It is the default: it answers
for every path no other API family claims (the service routes too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder

from api_adapter.dialects import HTTP_CODES, Answer, register
from offpeak import errors


def _body(code: str, detail: object) -> dict[str, Any]:
    return {"detail": detail, "code": code}


class ExxaDialect:
    prefix: str = "/"
    challenge: str | None = "X-API-Key"

    def offpeak_error(self, exc: errors.OffpeakError, status: int) -> Answer:
        if status != 422:
            return Answer(status, _body(exc.code, exc.message))
        # Keep FastAPI's validation shape, so clients parse one format for every 422.
        loc = (
            ["body", "request_body", "model"] if isinstance(exc, errors.UnknownModel) else ["body"]
        )
        return Answer(422, _body(exc.code, [{"loc": loc, "msg": exc.message, "type": exc.code}]))

    def validation_error(self, problems: Sequence[Mapping[str, Any]]) -> Answer:
        detail = [{key: p[key] for key in ("loc", "msg", "type") if key in p} for p in problems]
        return Answer(422, _body("validation_error", jsonable_encoder(detail)))

    def http_error(self, status: int, detail: Any) -> Answer:
        return Answer(status, _body(HTTP_CODES.get(status, "http_error"), detail))

    def unsafe_json(self, exc: errors.UnsafeJson, where: str) -> Answer:
        detail = [{"loc": [where, *exc.loc], "msg": exc.message, "type": exc.code}]
        return Answer(422, _body(exc.code, detail))

    def unavailable(self, outage: errors.DependencyUnavailable) -> Answer:
        return Answer(503, _body(outage.code, outage.message))


DIALECT = register(ExxaDialect())
