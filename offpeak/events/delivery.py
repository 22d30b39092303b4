"""Delivering the outbox: each pending event POSTed to its target, signed the Standard
Webhooks way, retried with exponential backoff and jitter until it is delivered, a
receiver refuses it for good, or it is a day old.

At least once, in order per target: a target's events go one after the other in id
(creation) order, and a target whose oldest pending event must wait holds the rest
back. Each attempt is logged (`GET /v1/webhooks/deliveries`). Targets are served in
parallel, so one slow receiver does not hold up the others.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.config import Settings
from offpeak.errors import WebhookUrlForbidden
from offpeak.events import secrets
from offpeak.events.guard import Guard
from offpeak.events.outbox import DELIVERED, FAILED, PENDING
from offpeak.ids import new_id
from offpeak.state.db import Database
from offpeak.state.models import WebhookAttempt, WebhookEvent

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 4096  # a receiver's answer is read this far, then dropped
MAX_TARGETS = 8  # targets served at once
# A target's share of one pass: a slow receiver takes its turn, then waits for the next
# pass instead of stretching the scheduler's tick.
PASS_SECONDS = 20.0
USER_AGENT = "offpeak-webhooks/1"


@dataclass(frozen=True)
class Policy:
    """Retry policy and limits (from the `webhook_*` settings)."""

    timeout: float = 5.0
    base: float = 10.0
    cap: float = 3600.0
    give_up_after: float = 86400.0


def from_settings(settings: Settings) -> tuple[Guard, Policy]:
    """The guard and retry policy the settings ask for."""
    policy = Policy(
        timeout=settings.webhook_timeout_seconds,
        base=settings.webhook_retry_base_seconds,
        cap=settings.webhook_retry_max_seconds,
        give_up_after=settings.webhook_give_up_seconds,
    )
    return Guard(allow_private=settings.webhook_allow_private), policy


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code, or the error that stopped it."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None
    transient: bool = True  # for errors: whether trying again may help


# --- pure decisions ---------------------------------------------------------------------


def retry_delay(
    attempts: int, policy: Policy, retry_after: float | None, rand: Callable[[], float]
) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: the base doubled
    per attempt up to the cap, times a jitter in [0.5, 1); a receiver's Retry-After
    wins when it asks for longer."""
    backoff = min(policy.base * 2 ** (attempts - 1), policy.cap) * (0.5 + rand() / 2)
    return max(backoff, retry_after or 0.0)


def outcome(answer: Answer) -> str:
    """delivered (2xx), retry (timeouts, network errors, 5xx, 429) or failed (any other
    answer, redirects included: they are not followed)."""
    if answer.status is None:
        return "retry" if answer.transient else FAILED
    if 200 <= answer.status < 300:
        return DELIVERED
    if answer.status == 429 or answer.status >= 500:
        return "retry"
    return FAILED


def parse_retry_after(value: str | None, at: float) -> float | None:
    """Retry-After as seconds from ``at``: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - at)


def signature(secret_list: list[str], event_id: str, at: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per live secret."""
    stamp = datetime.fromtimestamp(at, UTC)
    return " ".join(Webhook(s).sign(event_id, stamp, body) for s in secret_list)


# --- one HTTP attempt ---------------------------------------------------------------------


def _connection(guard: Guard, scheme: str, host: str, port: int, timeout: float) -> Any:
    # http.client follows no redirects; its socket comes from the guard, which opens it
    # to an address it has just vetted (the TLS check still uses the host name).
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def create_connection(
        address: tuple[str, int], timeout: float | None = None, *_: Any
    ) -> socket.socket:
        return guard.open(address[0], address[1], timeout or 5.0)

    conn._create_connection = create_connection  # type: ignore[attr-defined]
    return conn


def post(guard: Guard, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Answer:
    """POST ``body`` to ``url`` through the guard; never raises for the receiver's sake."""
    try:
        target = guard.parse(url)
        conn = _connection(guard, target.scheme, target.host, target.port, timeout)
    except WebhookUrlForbidden as exc:
        return Answer(None, error=f"{exc.code}: {exc.message}", transient=False)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        retry_after = parse_retry_after(response.getheader("Retry-After"), time.time())
        return Answer(response.status, retry_after)
    except WebhookUrlForbidden as exc:
        # A name that now resolves nowhere may come back; one that resolves to a
        # refused address is refused for good.
        transient = exc.code == "webhook_url_unresolvable"
        return Answer(None, error=f"{exc.code}: {exc.message}", transient=transient)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        conn.close()


# --- the outbox ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: Report) -> Report:
        return Report(
            self.delivered + other.delivered,
            self.retried + other.retried,
            self.failed + other.failed,
        )


def _targets(db: Database) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(
                select(WebhookEvent.target).where(WebhookEvent.status == PENDING).distinct()
            )
        )


def _head(db: Database, target: str) -> WebhookEvent | None:
    with db.session() as session:
        return session.scalar(
            select(WebhookEvent)
            .where(WebhookEvent.target == target, WebhookEvent.status == PENDING)
            .order_by(WebhookEvent.id)
            .limit(1)
        )


def attempt(db: Database, guard: Guard, policy: Policy, event: WebhookEvent) -> str:
    """One try at ``event``, recorded with its attempt row; returns the outcome."""
    at = now()
    with db.session(write=True) as session:
        keys = secrets.live(session, event.key_id, at)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(at),
        "webhook-signature": signature(keys, event.id, at, event.payload),
    }
    started = time.monotonic()
    answer = post(guard, event.target, headers, event.payload.encode(), policy.timeout)
    took = int((time.monotonic() - started) * 1000)
    result = outcome(answer)
    ended = now()
    tries = event.attempts + 1
    values: dict[str, Any] = {"attempts": tries}
    if result == "retry":
        delay = retry_delay(tries, policy, answer.retry_after, random.random)
        if ended + delay - event.created_at > policy.give_up_after:
            result = FAILED
        else:
            values["next_attempt_at"] = ended + int(delay + 0.999)
    if result != "retry":
        values.update(status=result, ended_at=ended, next_attempt_at=None)
    with db.session(write=True) as session:
        session.execute(update(WebhookEvent).where(WebhookEvent.id == event.id).values(**values))
        session.add(
            WebhookAttempt(
                id=new_id(),
                event_id=event.id,
                key_id=event.key_id,
                attempted_at=at,
                status_code=answer.status,
                error=answer.error,
                duration_ms=took,
                outcome=result,
            )
        )
    return result


def _serve(db: Database, guard: Guard, policy: Policy, target: str, budget: int) -> Report:
    report = Report()
    stop = time.monotonic() + PASS_SECONDS
    for _ in range(budget):
        event = _head(db, target)
        if event is None or (event.next_attempt_at or 0) > now():
            break
        result = attempt(db, guard, policy, event)
        report += Report(
            delivered=result == DELIVERED, retried=result == "retry", failed=result == FAILED
        )
        if result == "retry":
            break  # its later events wait, to keep them in order
        if time.monotonic() > stop:
            break  # its turn is over; the next pass goes on
    return report


def deliver_pending(db: Database, guard: Guard, policy: Policy, budget: int = 100) -> Report:
    """Send what is due, up to ``budget`` events per target; one pass, for a tick."""
    targets = _targets(db)
    if not targets:
        return Report()
    with ThreadPoolExecutor(min(MAX_TARGETS, len(targets))) as pool:
        reports = pool.map(lambda t: _serve(db, guard, policy, t, budget), targets)
        total = Report()
        for report in reports:
            total += report
    if total.failed:
        log.warning("webhooks: %d events given up", total.failed)
    return total


def pending_count(db: Database) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(WebhookEvent).where(WebhookEvent.status == PENDING)
            )
            or 0
        )


def recent_attempts(
    db: Database, key_id: str, limit: int = 100, event_id: str | None = None
) -> list[tuple[WebhookAttempt, WebhookEvent]]:
    """The key's latest delivery attempts, newest first, each with its event."""
    query = (
        select(WebhookAttempt, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookAttempt.event_id)
        .where(WebhookAttempt.key_id == key_id)
    )
    if event_id is not None:
        query = query.where(WebhookAttempt.event_id == event_id)
    with db.session() as session:
        rows = session.execute(query.order_by(WebhookAttempt.id.desc()).limit(limit))
        return [(a, e) for a, e in rows]
