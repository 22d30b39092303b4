"""The demo's webhook receiver: it keeps the events signed with the key's secret, refuses
the others, and the demo fails when one is bad or missing."""

from __future__ import annotations

import json

import pytest
import requests

from offpeak.clock import now
from offpeak.demo.display import DemoError
from offpeak.demo.receiver import show_events, webhook_receiver
from offpeak.events.delivery import signature

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "dGhpcyBpcyBhbm90aGVyIHNlY3JldCEhIQ=="


def send(url: str, secret: str, event_id: str) -> int:
    body = json.dumps({"type": "batch.completed", "data": {"id": "b1", "status": "completed"}})
    at = now()
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(at),
        "webhook-signature": signature([secret], event_id, at, body),
    }
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never through a configured proxy
        return session.post(url, data=body, headers=headers, timeout=5).status_code


def test_signed_events_are_kept_once_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with webhook_receiver(SECRET) as receiver:
        assert send(receiver.url("/own"), SECRET, "evt1") == 200
        assert send(receiver.url("/own"), SECRET, "evt1") == 200  # a redelivery
        show_events(receiver, {("/own", "b1")}, timeout=1)
    assert "batch.completed" in capsys.readouterr().out
    assert len(receiver.events) == 2 and len(receiver.unique()) == 1


def test_a_bad_signature_or_a_missing_event_fails_the_demo() -> None:
    with webhook_receiver(SECRET) as receiver:
        assert send(receiver.url("/all"), OTHER, "evt2") == 400
        with pytest.raises(DemoError, match="bad signature"):
            show_events(receiver, set(), timeout=0)
    with webhook_receiver(SECRET) as receiver, pytest.raises(DemoError, match="/all"):
        assert send(receiver.url("/own"), SECRET, "evt3") == 200
        show_events(receiver, {("/own", "b1"), ("/all", "b1")}, timeout=0.5)
