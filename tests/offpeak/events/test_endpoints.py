"""Webhook endpoints a key registers for all its events: checked by the SSRF guard when
registered, each a target of its own beside an object's `webhook`, and the one target of
OpenAI batches, whose events carry OpenAI's names and batch object."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from offpeak.clock import now
from offpeak.errors import Conflict, NotFound, WebhookUrlForbidden
from offpeak.events import endpoints, secrets
from offpeak.events.delivery import Policy, deliver_pending
from offpeak.publish.openai_files import finalize_ready
from offpeak.schemas import BatchCreate
from offpeak.state import batches
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, WebhookEvent
from offpeak.state.requests import cancel_request, insert_requests, new_request_row
from offpeak.storage import ObjectStore
from tests.offpeak.events.conftest import PUBLIC, Net
from tests.offpeak.ingest.test_openai_files import COMPLETION, finish, make_batch
from tests.utils.factories import request_create
from tests.utils.webhook_receiver import webhook_receiver

AT = 1_750_000_000
HOOK = "https://hooks.example/own"
ENDPOINT = "https://hooks.example/all"


# Names resolve from this table only: no lookup leaves the machine.
NAMES = Net(
    names={
        "hooks.example": [PUBLIC],
        "loopy.test": ["127.0.0.1"],
        "intranet.test": ["10.1.2.3"],
        "mixed.test": [PUBLIC, "192.168.1.10"],
    }
)


def register(db: Database, key: ApiKey, url: str = ENDPOINT) -> str:
    return endpoints.add(db, key.id, url, AT, guard=NAMES.guard()).id


def request(db: Database, key: ApiKey, webhook: str | None = None, at: int = AT) -> str:
    row = new_request_row(key.id, request_create("hi", webhook=webhook), at)
    insert_requests(db, [row])
    return str(row["id"])


def sent(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as session:
        rows = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))
        return [(e.type, e.object_id, e.target) for e in rows]


def test_endpoints_are_added_listed_and_removed_per_key(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    first = register(db, key)
    second = register(db, key, "https://hooks.example/two")
    assert [e.id for e in endpoints.list_endpoints(db, key.id)] == [first, second]
    assert endpoints.list_endpoints(db, other_key.id) == []
    with pytest.raises(Conflict) as exists:
        register(db, key)
    assert exists.value.code == "webhook_endpoint_exists"
    with pytest.raises(NotFound) as foreign:
        endpoints.remove(db, other_key.id, first)
    assert foreign.value.code == "webhook_endpoint_not_found"
    assert endpoints.remove(db, key.id, first).url == ENDPOINT
    assert [e.id for e in endpoints.list_endpoints(db, key.id)] == [second]


def test_a_key_has_at_most_ten_endpoints(db: Database, key: ApiKey) -> None:
    for i in range(endpoints.MAX_PER_KEY):
        register(db, key, f"https://hooks.example/{i}")
    with pytest.raises(Conflict) as full:
        register(db, key, "https://hooks.example/eleventh")
    assert full.value.code == "webhook_endpoint_limit"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1/hook", "webhook_url_forbidden"),
        ("https://10.0.0.1/hook", "webhook_url_forbidden"),
        ("http://169.254.169.254/latest", "webhook_url_forbidden"),
        ("https://[::1]/hook", "webhook_url_forbidden"),
        ("https://loopy.test/hook", "webhook_url_forbidden"),
        ("https://intranet.test/hook", "webhook_url_forbidden"),
        ("https://mixed.test/hook", "webhook_url_forbidden"),
        ("http://hooks.example/hook", "webhook_url_insecure"),
        ("ftp://hooks.example/x", "webhook_url_invalid"),
    ],
)
def test_the_guard_refuses_an_endpoint_when_it_is_registered(
    db: Database, key: ApiKey, url: str, code: str
) -> None:
    with pytest.raises(WebhookUrlForbidden) as refused:
        endpoints.add(db, key.id, url, AT, guard=NAMES.guard())
    assert refused.value.code == code
    assert endpoints.list_endpoints(db, key.id) == []


def test_an_event_goes_to_the_objects_webhook_and_to_each_endpoint(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    register(db, key)
    own = request(db, key, webhook=HOOK)
    alone = request(db, key)
    same = request(db, key, webhook=ENDPOINT)  # its webhook is an endpoint too: once
    foreign = request(db, other_key)  # another key's endpoints are not this key's
    for rid in (own, alone, same, foreign):
        cancel_request(db, key.id if rid != foreign else other_key.id, rid, AT + 5)
    assert sent(db) == [
        ("request.cancelled", own, HOOK),
        ("request.cancelled", own, ENDPOINT),
        ("request.cancelled", alone, ENDPOINT),
        ("request.cancelled", same, ENDPOINT),
    ]


def test_a_batch_reports_to_endpoints_once_not_per_request(db: Database, key: ApiKey) -> None:
    register(db, key)
    ids = [request(db, key) for _ in range(3)]
    batch = batches.create_batch(db, key.id, BatchCreate(requests_ids=ids, webhook=HOOK), AT + 1)
    batches.cancel_batch(db, key.id, batch.id, AT + 5)
    assert sent(db) == [
        ("batch.cancelled", batch.id, HOOK),
        ("batch.cancelled", batch.id, ENDPOINT),
    ]


def test_an_openai_batch_sends_openais_event_with_its_batch_object_once_its_files_exist(
    db: Database, store: ObjectStore, key: ApiKey
) -> None:
    register(db, key)
    new = make_batch(db, store, key, ["a", "b"])
    done, _ = (rid for rid, *_ in new.requests)
    finish(db, store, done, {"status": "completed", "body": dict(COMPLETION)})
    batches.cancel_batch(db, key.id, new.id, now())
    assert sent(db) == []  # `cancelling` until its files are written
    assert finalize_ready(db, store) == [new.id]
    with db.session() as session:
        [event] = session.scalars(select(WebhookEvent))
    assert (event.type, event.object_id, event.target) == ("batch.cancelled", new.id, ENDPOINT)
    data = json.loads(event.payload)["data"]
    assert (data["object"], data["id"], data["status"]) == ("batch", new.id, "cancelled")
    assert data["output_file_id"] and data["error_file_id"] and data["cancelled_at"]
    assert data["request_counts"] == {"total": 2, "completed": 1, "failed": 1}


def test_each_target_gets_its_events_signed_and_in_order(db: Database, key: ApiKey) -> None:
    net = Net(loopback_ok=True)
    with webhook_receiver() as receiver:
        endpoints.add(db, key.id, receiver.url("/all"), AT, guard=net.guard(allow_private=True))
        at = now()  # events older than a day are given up
        ids = [request(db, key, webhook=receiver.url("/own"), at=at) for _ in range(3)]
        for rid in ids:
            cancel_request(db, key.id, rid, at)
        receiver.answer("/all", 500)  # the endpoint's first event waits; /own goes on
        policy = Policy(timeout=2, base=0.001, cap=0.001)
        first = deliver_pending(db, net.guard(allow_private=True), policy)
        assert (first.delivered, first.retried) == (3, 1)
        while deliver_pending(db, net.guard(allow_private=True), policy).delivered:
            pass
        with db.session(write=True) as session:
            [secret] = secrets.live(session, key.id, now())
        for path in ("/own", "/all"):
            got = [r for r in receiver.at(path) if r.body]
            bodies = [Webhook(secret).verify(r.body, r.headers) for r in got]
            seen = list(dict.fromkeys(b["data"]["id"] for b in bodies))
            assert seen == ids, path
        ids_own = {r.headers["webhook-id"] for r in receiver.at("/own")}
        ids_all = {r.headers["webhook-id"] for r in receiver.at("/all")}
        assert len(ids_own) == len(ids_all) == 3 and not ids_own & ids_all
    assert all(ip == "127.0.0.1" for ip in net.connects)


def test_an_endpoint_whose_name_now_resolves_privately_is_refused_at_delivery(
    db: Database, key: ApiKey
) -> None:
    then = Net(names={"flip.test": [PUBLIC]})
    endpoints.add(db, key.id, "https://flip.test/hook", AT, guard=then.guard())
    at = now()
    cancel_request(db, key.id, request(db, key, at=at), at)
    later = Net(names={"flip.test": ["10.0.0.5"]})  # DNS changed; Net fails any connect
    policy = Policy(timeout=2, base=0.001, cap=0.001)
    assert deliver_pending(db, later.guard(), policy).failed == 1
    assert later.connects == []
    with db.session() as session:
        [event] = session.scalars(select(WebhookEvent))
    assert event.status == "failed"
