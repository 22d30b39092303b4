"""The delivery task on its own (``.fn``: no Prefect server), wired from the settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.config import Settings, get_settings
from offpeak.events import secrets
from offpeak.state.requests import cancel_request, insert_requests, new_request_row
from tasks.runtime import runtime
from tasks.webhooks import deliver_webhooks
from tests.utils.factories import new_key, request_create
from tests.utils.webhook_receiver import webhook_receiver


@pytest.fixture
def webhook_env(task_env: Callable[..., Settings]) -> Settings:
    return task_env(OFFPEAK_WEBHOOK_ALLOW_PRIVATE="true")  # a loopback receiver


def test_the_task_delivers_what_is_due(webhook_env: Settings) -> None:
    db = runtime().db
    key = new_key(db)[0]
    secret = secrets.create(db, key.id, now())
    with webhook_receiver() as receiver:
        row = new_request_row(key.id, request_create("hi", webhook=receiver.url()), now())
        insert_requests(db, [row])
        cancel_request(db, key.id, row["id"], now())
        assert deliver_webhooks.fn() == {"delivered": 1, "retried": 0, "failed": 0}
        assert deliver_webhooks.fn() == {"delivered": 0, "retried": 0, "failed": 0}
        [received] = receiver.received
    body = Webhook(secret).verify(received.body, received.headers)
    assert (body["type"], body["data"]["id"]) == ("request.cancelled", row["id"])


def test_the_task_refuses_loopback_without_the_switch(
    webhook_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFPEAK_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    runtime.cache_clear()
    db = runtime().db
    key = new_key(db)[0]
    with webhook_receiver() as receiver:
        row = new_request_row(key.id, request_create("hi", webhook=receiver.url()), now())
        insert_requests(db, [row])
        cancel_request(db, key.id, row["id"], now())
        assert deliver_webhooks.fn() == {"delivered": 0, "retried": 0, "failed": 1}
        assert receiver.received == []
