"""The HTTP transport both network providers share: GET a JSON document with
retries, typed errors, and a short-lived cache.

Retried: timeouts and network errors, 429 and 5xx (exponential backoff with jitter,
``Retry-After`` honoured up to the longest delay), and a plain 401 a few times, since
Electricity Maps also answers 401 when it throttles. Not retried: a refusal that names
the plan ("Token unauthorized for zoneKey", "Endpoint not available"), 403, 404 and
other 4xx. The sleeper, the random source and the clock are injectable so tests run
instantly. Retries run on tenacity, the cache is a cachetools ``TTLCache``.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import tenacity
from cachetools import TTLCache
from pydantic import BaseModel, ValidationError

from offpeak.errors import (
    CarbonMalformed,
    CarbonNotInPlan,
    CarbonSignalError,
    CarbonUnavailable,
    CarbonUnknownZone,
)

log = logging.getLogger(__name__)

Params = Mapping[str, str | int | float]
Model = TypeVar("Model", bound=BaseModel)
Budget = Literal["transient", "unauthorized"]
CACHE_ENTRIES = 256  # answers kept: a tick asks for a handful of zones and windows


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to ask again."""

    attempts: int = 4  # tries in all on timeouts, network errors, 429 and 5xx
    unauthorized_attempts: int = 3  # tries in all on a 401 that does not name the plan
    base_delay: float = 0.5  # seconds before the first retry, doubling after each
    max_delay: float = 10.0  # longest single wait, Retry-After included

    def limit(self, budget: Budget) -> int:
        """Tries in all that ``budget`` allows."""
        return self.attempts if budget == "transient" else self.unauthorized_attempts

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling * (0.5 + 0.5 * rng.random())  # "equal jitter": never below half


class _Retry(Exception):
    """Internal: this answer is worth another try after ``delay`` seconds (if given)."""

    def __init__(
        self, error: CarbonSignalError, budget: Budget, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.error, self.budget, self.retry_after = error, budget, retry_after


def _failure(state: tenacity.RetryCallState) -> _Retry:
    """The :class:`_Retry` the attempt behind ``state`` raised."""
    assert state.outcome is not None  # tenacity asks only after an attempt failed
    failure = state.outcome.exception()
    assert isinstance(failure, _Retry)  # only _Retry is retried
    return failure


class _Budgets(tenacity.stop.stop_base):
    """Stop once one kind of failure used up its own tries: a throttling 401 and a
    flaky server are counted apart, as one call may meet both."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._tries: Counter[str] = Counter()

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        budget = _failure(state).budget
        self._tries[budget] += 1
        return self._tries[budget] >= self._policy.limit(budget)


class JsonClient:
    """GET JSON documents from one provider's base URL, retrying what is transient."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        cache_seconds: float = 300.0,
        plan_refusal: re.Pattern[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client(follow_redirects=True)
        self._retry = retry or RetryPolicy()
        # No TTL means no cache: cachetools would store entries already expired.
        self._cache: TTLCache[object, Any] | None = (
            TTLCache(CACHE_ENTRIES, cache_seconds, timer=clock) if cache_seconds > 0 else None
        )
        self._plan_refusal = plan_refusal
        self._sleep = sleep
        self._rng = rng or random.Random()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def set_header(self, name: str, value: str) -> None:
        """Send ``name: value`` from now on (a bearer token renewed by a login)."""
        self._headers[name] = value

    def get(self, path: str, params: Params | None = None) -> Any:
        """The decoded JSON body of ``GET base_url + path``, from the cache if fresh."""
        key = (path, tuple(sorted((params or {}).items())))
        if self._cache is not None and (cached := self._cache.get(key)) is not None:
            return cached
        body = self._get_with_retries(path, params)
        if self._cache is not None:
            self._cache[key] = body
        return body

    def _get_with_retries(self, path: str, params: Params | None) -> Any:
        def wait(state: tenacity.RetryCallState) -> float:
            return self._retry.delay(state.attempt_number, self._rng, _failure(state).retry_after)

        def announce(state: tenacity.RetryCallState) -> None:
            delay = state.upcoming_sleep
            error = _failure(state).error
            log.warning("%s %s: %s; retrying in %.1f s", self.provider, path, error, delay)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            stop=_Budgets(self._retry),
            wait=wait,
            sleep=self._sleep,
            before_sleep=announce,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, params)
        except _Retry as last:
            raise last.error from last.__cause__

    def _get_once(self, path: str, params: Params | None) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self._client.get(
                url, params=dict(params or {}), headers=self._headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            timed_out = self._error(CarbonUnavailable, f"timed out ({exc!r})")
            raise _Retry(timed_out, "transient") from exc
        except httpx.HTTPError as exc:
            unreachable = self._error(CarbonUnavailable, f"unreachable ({exc!r})")
            raise _Retry(unreachable, "transient") from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise self._error(CarbonMalformed, f"answered with invalid JSON: {exc}") from exc
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> Exception:
        """The error (or :class:`_Retry`) that a non-2xx answer means."""
        status, message = response.status_code, error_message(response)
        said = f"answered {status}: {message}"
        names_plan = bool(self._plan_refusal and self._plan_refusal.search(message))
        if status == 429 or status >= 500:
            after = _retry_after(response)
            return _Retry(self._error(CarbonUnavailable, said), "transient", after)
        if status in (400, 401, 403) and names_plan:
            return self._error(CarbonNotInPlan, said)
        if status == 401:
            refused = self._error(CarbonNotInPlan, f"{said} (bad token, or throttled)")
            return _Retry(refused, "unauthorized", _retry_after(response))
        if status == 403:
            return self._error(CarbonNotInPlan, said)
        if status == 404:
            return self._error(CarbonUnknownZone, said)
        return CarbonSignalError(f"{self.provider} {said}", code="carbon_bad_request")

    def _error(self, kind: type[CarbonSignalError], what: str) -> CarbonSignalError:
        return kind(f"{self.provider} {what}")


def parse_payload(model: type[Model], body: Any, provider: str, what: str) -> Model:
    """``body`` validated as ``model``, or :class:`CarbonMalformed` saying what was off."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise CarbonMalformed(
            f"{provider} {what}: unexpected payload at {where}: {first['msg']}"
        ) from exc


def error_message(response: httpx.Response) -> str:
    """The message of an error body, in either provider's shape, else its text.

    Electricity Maps: ``{"error": "..."}``; UK Carbon Intensity:
    ``{"error": {"code": "400 Bad Request", "message": "..."}}``.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("message"))
        if isinstance(error, dict):
            error = error.get("message") or error.get("code")
        if isinstance(error, str):
            return error
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff
