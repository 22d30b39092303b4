"""Delivery against a real receiver on loopback: every attempt signed (checked with
standardwebhooks), retried on 5xx, 429 and network errors, given up on other 4xx, in
order per target, and nothing lost across a restart."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from offpeak.events import delivery, secrets
from offpeak.events.delivery import Policy, deliver_pending, recent_attempts
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, WebhookEvent
from offpeak.state.requests import cancel_request, insert_requests, new_request_row
from tests.offpeak.events.conftest import Net
from tests.utils.factories import request_create
from tests.utils.webhook_receiver import Receiver, webhook_receiver

POLICY = Policy(timeout=2, base=2, cap=8, give_up_after=3600)


class Clock:
    """Delivery's clock, moved by the test (kept within minutes of the real one: the
    receivers check signature timestamps against it)."""

    def __init__(self) -> None:
        self.t = int(time.time())

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(delivery, "now", clock)
    return clock


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def net() -> Net:
    return Net(names={"receiver.test": ["127.0.0.1"]}, loopback_ok=True)


def cancelled_requests(db: Database, key: ApiKey, hooks: list[str], at: int) -> list[str]:
    """One request per webhook URL, each cancelled in turn (one event each)."""
    rows = [
        new_request_row(key.id, request_create(f"p{i}", webhook=h), at) for i, h in enumerate(hooks)
    ]
    insert_requests(db, rows)
    for row in rows:
        cancel_request(db, key.id, row["id"], at)
    return [row["id"] for row in rows]


def events(db: Database, target: str | None = None) -> list[WebhookEvent]:
    query = select(WebhookEvent).order_by(WebhookEvent.id)
    if target:
        query = query.where(WebhookEvent.target == target)
    with db.session() as session:
        return list(session.scalars(query))


def verify_all(receiver: Receiver, secret: str) -> list[dict[str, object]]:
    """Check every received signature with standardwebhooks; the decoded bodies."""
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers) for r in receiver.received]


def test_every_event_arrives_signed_in_order_with_retries(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    secret = secrets.create(db, key.id, clock())
    a, b = receiver.url("/a"), receiver.url("/b", host="receiver.test")
    cancelled_requests(db, key, [a, b, a, b, a], clock())
    receiver.answer("/a", 500, (429, {"Retry-After": "30"}))
    receiver.answer("/b", 503)
    guard = net.guard(allow_private=True)

    report = deliver_pending(db, guard, POLICY)
    assert (report.delivered, report.retried) == (0, 2)  # each target's head, held back
    clock.t += 10
    report = deliver_pending(db, guard, POLICY)
    assert (report.delivered, report.retried) == (2, 1)  # /b drained; /a hears 429
    clock.t += 20
    assert deliver_pending(db, guard, POLICY).delivered == 0  # Retry-After: 30 holds /a
    # A restart: a new process opens the database; nothing pending is lost.
    reopened = Database(db.url)
    try:
        clock.t += 15
        assert deliver_pending(reopened, guard, POLICY).delivered == 3
        assert deliver_pending(reopened, guard, POLICY).delivered == 0
    finally:
        reopened.dispose()

    bodies = verify_all(receiver, secret)
    assert len(bodies) == 5 + 3  # two retries at /a, one at /b
    for target, path in ((a, "/a"), (b, "/b")):
        expected = [e.id for e in events(db, target)]
        ids = [r.headers["webhook-id"] for r in receiver.at(path)]
        assert list(dict.fromkeys(ids)) == expected  # in order, each one
        assert all(e.status == "delivered" for e in events(db, target))
    first = receiver.at("/a")[:3]
    assert len({r.headers["webhook-id"] for r in first}) == 1  # the same event, retried
    assert len({r.body for r in first}) == 1
    assert len({r.headers["webhook-timestamp"] for r in first}) == 3  # signed afresh
    assert {body["type"] for body in bodies} == {"request.cancelled"}
    assert net.lookups and set(net.connects) == {"127.0.0.1"}
    attempts = recent_attempts(db, key.id)
    assert len(attempts) == 8
    head = events(db, a)[0].id
    assert [t.status_code for t, e in reversed(attempts) if e.id == head] == [500, 429, 200]
    assert [t.outcome for t, e in reversed(attempts) if e.id == head] == [
        "retry",
        "retry",
        "delivered",
    ]


def test_other_4xx_are_given_up_without_blocking_the_next(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    secrets.create(db, key.id, clock())
    hook = receiver.url("/c")
    first, _ = cancelled_requests(db, key, [hook, hook], clock())
    receiver.answer("/c", 400)
    report = deliver_pending(db, net.guard(allow_private=True), POLICY)
    assert (report.failed, report.delivered) == (1, 1)
    assert [e.status for e in events(db)] == ["failed", "delivered"]
    assert [e.attempts for e in events(db)] == [1, 1]
    [(attempt, event)] = recent_attempts(db, key.id, event_id=events(db)[0].id)
    assert (attempt.status_code, attempt.outcome, event.object_id) == (400, "failed", first)


def test_an_event_still_failing_after_its_deadline_is_given_up(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    secrets.create(db, key.id, clock())
    cancelled_requests(db, key, [receiver.url("/down")], clock())
    receiver.answer("/down", *[500] * 10)
    policy = Policy(timeout=2, base=2, cap=8, give_up_after=60)
    guard = net.guard(allow_private=True)
    assert deliver_pending(db, guard, policy).retried == 1
    clock.t += 59  # the next retry would fall past the deadline
    assert deliver_pending(db, guard, policy).failed == 1
    clock.t += 3600
    assert deliver_pending(db, guard, policy).failed == 0
    assert len(receiver.received) == 2


def test_an_unreachable_receiver_is_retried(
    db: Database, key: ApiKey, clock: Clock, net: Net
) -> None:
    secrets.create(db, key.id, clock())
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cancelled_requests(db, key, [f"http://127.0.0.1:{port}/x"], clock())
    assert deliver_pending(db, net.guard(allow_private=True), POLICY).retried == 1
    [(attempt, event)] = recent_attempts(db, key.id)
    assert attempt.status_code is None and "Connection" in (attempt.error or "")
    assert event.status == "pending" and (event.next_attempt_at or 0) > clock()


def test_a_rotated_secret_signs_beside_the_new_one_until_it_retires(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    old = secrets.create(db, key.id, clock())
    _, new = secrets.rotate(db, key.id, clock(), overlap_seconds=60)
    assert new.startswith("whsec_") and new != old
    hook = receiver.url("/r")
    guard = net.guard(allow_private=True)
    cancelled_requests(db, key, [hook], clock())
    deliver_pending(db, guard, POLICY)
    clock.t += 61
    cancelled_requests(db, key, [hook], clock())
    deliver_pending(db, guard, POLICY)
    during, after = receiver.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(after.body, after.headers)


def test_a_key_without_a_secret_gets_one_when_it_first_sends(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    cancelled_requests(db, key, [receiver.url("/n")], clock())
    assert deliver_pending(db, net.guard(allow_private=True), POLICY).delivered == 1
    _, secret = secrets.rotate(db, key.id, clock(), overlap_seconds=0)
    assert secret.startswith("whsec_")


def test_retry_delay_doubles_with_jitter_and_honours_retry_after() -> None:
    policy = Policy(base=10, cap=100)
    assert delivery.retry_delay(1, policy, None, lambda: 0.0) == 5
    assert delivery.retry_delay(1, policy, None, lambda: 1.0) == 10
    assert delivery.retry_delay(3, policy, None, lambda: 1.0) == 40
    assert delivery.retry_delay(9, policy, None, lambda: 1.0) == 100  # capped
    assert delivery.retry_delay(1, policy, 300, lambda: 1.0) == 300


def test_outcomes_of_answers() -> None:
    answer = delivery.Answer
    assert delivery.outcome(answer(204)) == "delivered"
    assert delivery.outcome(answer(500)) == delivery.outcome(answer(429)) == "retry"
    assert delivery.outcome(answer(410)) == delivery.outcome(answer(301)) == "failed"
    assert delivery.outcome(answer(None, error="timeout")) == "retry"
    assert delivery.outcome(answer(None, error="refused", transient=False)) == "failed"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert delivery.parse_retry_after("120", 0) == 120
    at = time.time()
    assert 59 <= (delivery.parse_retry_after(formatdate(at + 60, usegmt=True), at) or 0) <= 61
    assert delivery.parse_retry_after("soon", at) is None
    assert delivery.parse_retry_after(None, at) is None


def test_the_payload_is_what_was_stored(
    db: Database, key: ApiKey, clock: Clock, receiver: Receiver, net: Net
) -> None:
    secret = secrets.create(db, key.id, clock())
    [rid] = cancelled_requests(db, key, [receiver.url("/p")], clock())
    deliver_pending(db, net.guard(allow_private=True), POLICY)
    [received] = receiver.received
    assert received.body.decode() == events(db)[0].payload
    body = Webhook(secret).verify(received.body, received.headers)
    assert body["data"]["id"] == rid and body["data"]["status"] == "cancelled"
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body)["type"] == "request.cancelled"


def test_a_pass_gives_each_target_a_bounded_turn(
    db: Database,
    key: ApiKey,
    clock: Clock,
    receiver: Receiver,
    net: Net,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets.create(db, key.id, clock())
    hook = receiver.url("/slow")
    cancelled_requests(db, key, [hook] * 3, clock())
    monkeypatch.setattr(delivery, "PASS_SECONDS", 0.0)  # spent after the first attempt
    guard = net.guard(allow_private=True)
    assert deliver_pending(db, guard, POLICY).delivered == 1
    assert deliver_pending(db, guard, POLICY, budget=1).delivered == 1
    monkeypatch.setattr(delivery, "PASS_SECONDS", 20.0)
    assert deliver_pending(db, guard, POLICY).delivered == 1
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [e.id for e in events(db)]
