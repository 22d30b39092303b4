"""`offpeak keys create --json` shows the webhook secret once; `offpeak keys
rotate-webhook-secret` issues a new one, the old one signing beside it for a while."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.events import secrets
from offpeak.events.delivery import signature
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
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


def test_deliveries_racing_on_a_key_without_a_secret_issue_one(db: Database, key: ApiKey) -> None:
    # A key made before webhooks existed has no secret; the deliveries to its targets
    # run side by side and each asks for the live ones at once (seen in CI: two issued).
    start = threading.Barrier(8)

    def ask(_: int) -> list[str]:
        start.wait()
        with db.session(write=True) as session:
            return secrets.live(session, key.id, now())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    with db.session() as session:
        assert secrets.live(session, key.id, now()) == answers[0]
    assert len(answers[0]) == 1 and all(a == answers[0] for a in answers)
