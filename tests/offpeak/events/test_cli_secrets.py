"""`offpeak keys create --json` shows the webhook secret once; `offpeak keys
rotate-webhook-secret` issues a new one, the old one signing beside it for a while."""

from __future__ import annotations

import json
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.events import secrets
from offpeak.events.delivery import signature
from offpeak.state.db import Database
from tests.offpeak.test_cli import offpeak


def test_keys_get_a_webhook_secret_once_and_rotate_it(tmp_path: Path) -> None:
    offpeak(tmp_path, "db", "upgrade")
    created = json.loads(offpeak(tmp_path, "keys", "create", "--name", "a", "--json").stdout)
    first = created["webhook_secret"]
    assert first.startswith("whsec_")
    assert first not in offpeak(tmp_path, "keys", "list", "--json").stdout

    rotated = json.loads(
        offpeak(tmp_path, "keys", "rotate-webhook-secret", created["id"], "--json").stdout
    )
    second = rotated["webhook_secret"]
    assert second.startswith("whsec_") and second != first
    assert rotated["overlap_seconds"] == 86_400

    db = Database(f"sqlite:///{tmp_path / 'offpeak.db'}")
    try:
        at = now()
        with db.session(write=True) as session:
            live = secrets.live(session, created["id"], at)
        assert live == [second, first]  # both sign during the overlap
        header = signature(live, "evt", at, "{}")
        headers = {"webhook-id": "evt", "webhook-timestamp": str(at), "webhook-signature": header}
        for secret in (first, second):
            Webhook(secret).verify("{}", headers)
        with db.session(write=True) as session:
            assert secrets.live(session, created["id"], at + 86_401) == [second]
    finally:
        db.dispose()


def test_rotating_an_unknown_key_says_so(tmp_path: Path) -> None:
    offpeak(tmp_path, "db", "upgrade")
    done = offpeak(tmp_path, "keys", "rotate-webhook-secret", "nope", ok=False)
    assert "no API key" in done.stderr and "Traceback" not in done.stderr
