"""Webhooks end to end: requests and a batch submitted with a `webhook` URL, run by the
real deployments, notify a receiver on loopback with signed events, retried through a
500 and a 429."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.events import secrets
from offpeak.state.keys import authenticate
from tests.e2e.conftest import Stack
from tests.e2e.test_pipeline import submit
from tests.utils import exxa_snippets as snippets
from tests.utils.exxa_snippets import printed, run_snippet
from tests.utils.services import wait_for
from tests.utils.webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_lifecycle_events_reach_the_webhooks_signed(stack: Stack) -> None:
    key = stack.new_key()
    secret = secrets.create(stack.db, authenticate(stack.db, key).id, now())
    with webhook_receiver() as receiver, stack.client(key) as api:
        receiver.answer("/requests", 500)
        receiver.answer("/batch", (429, {"Retry-After": "1"}))
        ids = [submit(api, f"Say {i}", max_tokens=4, seed=i) for i in range(3)]
        hooked = api.post(
            "/v1/requests",
            json={
                "request_body": {
                    "model": "llama-3.1-70b-instruct-fp16",
                    "messages": [{"role": "user", "content": "Hello"}],
                    "max_tokens": 4,
                },
                "webhook": receiver.url("/requests"),
            },
        )
        assert hooked.status_code == 201, hooked.text
        batch = api.post(
            "/v1/batches", json={"requests_ids": ids, "webhook": receiver.url("/batch")}
        ).json()

        def delivered() -> bool:
            ok = {r.path for r in receiver.received if r.path in ("/requests", "/batch")}
            return len(receiver.received) >= 4 and ok == {"/requests", "/batch"}

        wait_for(delivered, "webhook deliveries", timeout=600)
        hook = Webhook(secret)
        events = [(r.path, hook.verify(r.body, r.headers)) for r in receiver.received]
        assert [e["type"] for p, e in events if p == "/requests"] == ["request.completed"] * 2
        assert [e["type"] for p, e in events if p == "/batch"] == ["batch.completed"] * 2
        by_path = {p: e["data"] for p, e in events}
        assert by_path["/requests"]["id"] == hooked.json()["id"]
        assert by_path["/batch"] == {**by_path["/batch"], "id": batch["id"], "status": "completed"}
        ids_sent = {p: {r.headers["webhook-id"] for r in receiver.at(p)} for p in by_path}
        assert all(len(v) == 1 for v in ids_sent.values())  # one event each, retried

        # The receiver has an answer before the sender records it: wait for the records.
        def listed() -> list[dict[str, Any]]:
            data: list[dict[str, Any]] = api.get("/v1/webhooks/deliveries").json()["data"]
            return data

        wait_for(lambda: len(listed()) >= 4, "the deliveries recorded", timeout=60)
        assert sorted((d["status_code"], d["outcome"]) for d in listed()) == [
            (200, "delivered"),
            (200, "delivered"),
            (429, "retry"),
            (500, "retry"),
        ]


def with_webhook(snippet: str, url: str) -> str:
    """A getting-started snippet whose payload also names a `webhook`."""
    assert snippet.count("payload = {\n") == 1
    return snippet.replace("payload = {\n", f'payload = {{\n"webhook": "{url}",\n')


def test_getting_started_snippets_with_a_webhook_deliver_signed_events(stack: Stack) -> None:
    """The snippets as a user runs them, with a `webhook`, and a key-level endpoint: each
    single request and batch notifies both, each target its own delivery, in order."""
    key = stack.new_key()
    secret = secrets.create(stack.db, authenticate(stack.db, key).id, now())
    with webhook_receiver() as receiver, stack.client(key) as api:
        endpoint = api.post("/v1/webhooks/endpoints", json={"url": receiver.url("/all")})
        assert endpoint.status_code == 201, endpoint.text
        own = receiver.url("/own")
        members = [
            printed(run_snippet(stack.base_url, key, snippets.SEND_REQUEST)[0])["id"]
            for _ in range(2)
        ]
        single = printed(
            run_snippet(stack.base_url, key, with_webhook(snippets.SEND_REQUEST, own))[0]
        )["id"]
        batch = printed(
            run_snippet(
                stack.base_url,
                key,
                with_webhook(snippets.CREATE_BATCH, own),
                request_id1=members[0],
                request_id2=members[1],
            )[0]
        )["id"]

        def delivered() -> bool:
            types = {(r.path, Webhook(secret).verify(r.body, r.headers)["type"])
                     for r in receiver.received}  # fmt: skip
            return {("/own", "batch.completed"), ("/all", "batch.completed")} <= types

        wait_for(delivered, "the batch's events", timeout=600)
        hook = Webhook(secret)
        for path in ("/own", "/all"):
            events = [hook.verify(r.body, r.headers) for r in receiver.at(path)]
            seen = [(e["type"], e["data"]["id"]) for e in events]
            assert ("request.completed", single) in seen, (path, seen)
            assert ("batch.completed", batch) in seen, (path, seen)
        ids = [{r.headers["webhook-id"] for r in receiver.at(p)} for p in ("/own", "/all")]
        assert not ids[0] & ids[1]  # each target its own event
