"""Error dialects: each API family words its errors in the shape its clients parse.

The EXXA routes answer FastAPI's `{"detail", "code"}`, the OpenAI and Anthropic routes
their SDKs' shapes. A :class:`Dialect` turns each kind of failure into a status and a
body in its shape; the exception handlers (api_adapter/errors.py) and the body-limit
middleware (api_adapter/limits.py) pick one per request from the path, through the
registry that each API package fills when it is imported (`register`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from offpeak import errors

# The codes of errors that Starlette raises itself (no route, wrong method, ...).
HTTP_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class Answer(NamedTuple):
    """An error answer before it is encoded: the status, and the body in a dialect's shape."""

    status: int
    body: dict[str, Any]


class Dialect(Protocol):
    """One API family's error shape."""

    # The paths it answers for: the longest registered prefix of a path wins.
    prefix: str
    # The `WWW-Authenticate` challenge sent with a 401, if the family sends one.
    challenge: str | None

    def offpeak_error(self, exc: errors.OffpeakError, status: int) -> Answer:
        """A core exception, whose status the handler looked up."""
        ...

    def validation_error(self, problems: Sequence[Mapping[str, Any]]) -> Answer:
        """FastAPI's validation problems (`RequestValidationError.errors()`)."""
        ...

    def http_error(self, status: int, detail: Any) -> Answer:
        """An HTTP error raised by Starlette or a route, or refused by the body limits."""
        ...

    def unsafe_json(self, exc: errors.UnsafeJson, where: str) -> Answer:
        """A body or query value (``where`` is ``body`` or ``query``) no store can keep."""
        ...

    def unavailable(self, outage: errors.DependencyUnavailable) -> Answer:
        """A 503: the database or the object store is out of reach."""
        ...


D = TypeVar("D", bound=Dialect)
_REGISTRY: dict[str, Dialect] = {}


def register(dialect: D) -> D:
    """Make ``dialect`` answer for the paths under its prefix."""
    _REGISTRY[dialect.prefix] = dialect
    return dialect


def for_path(path: str) -> Dialect:
    """The dialect of the longest registered prefix of ``path``."""
    prefixes = [prefix for prefix in _REGISTRY if path.startswith(prefix)]
    if not prefixes:
        raise LookupError(f"no error dialect answers for {path}: is the EXXA API imported?")
    return _REGISTRY[max(prefixes, key=len)]
