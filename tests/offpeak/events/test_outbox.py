"""The outbox: an event row exactly when a status change with a webhook commits."""

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from offpeak.errors import Conflict
from offpeak.events import outbox
from offpeak.ids import new_id
from offpeak.schemas import BatchCreate, ErrorCode, JobStatus, Status
from offpeak.state import batches, jobs
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Job, WebhookEvent
from offpeak.state.requests import cancel_request, get_request, insert_requests, new_request_row
from tests.utils.factories import request_create

AT = 1_750_000_000
HOOK = "https://hooks.example/in"


def add(db: Database, key: ApiKey, count: int, webhook: str | None = HOOK, **kw: str) -> list[str]:
    rows = [
        new_request_row(key.id, request_create(f"p{i}", webhook=webhook, **kw), AT)
        for i in range(count)
    ]
    insert_requests(db, rows)
    return sorted(r["id"] for r in rows)


def events(db: Database) -> list[WebhookEvent]:
    with db.session() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def kinds(db: Database) -> list[tuple[str, str]]:
    return [(e.type, e.object_id) for e in events(db)]


def test_event_type_of_each_final_status() -> None:
    assert outbox.event_type("request", "completed", False) == "request.completed"
    assert outbox.event_type("request", "failed", False) == "request.failed"
    assert outbox.event_type("request", "failed", True) == "request.expired"
    assert outbox.event_type("batch", "cancelled", True) == "batch.cancelled"
    assert outbox.event_type("batch", "completed", True) == "batch.expired"
    assert outbox.event_type("request", "in_progress", False) is None


def test_cancelling_a_request_writes_its_event(db: Database, key: ApiKey) -> None:
    [rid] = add(db, key, 1)
    [quiet] = add(db, key, 1, webhook=None)
    cancel_request(db, key.id, rid, AT + 5)
    cancel_request(db, key.id, quiet, AT + 5)
    with pytest.raises(Conflict):
        cancel_request(db, key.id, rid, AT + 6)
    [event] = events(db)
    assert (event.type, event.object_id, event.target, event.key_id) == (
        "request.cancelled",
        rid,
        HOOK,
        key.id,
    )
    assert (event.status, event.attempts, event.next_attempt_at) == ("pending", 0, AT + 5)
    body = json.loads(event.payload)
    assert body == {
        "type": "request.cancelled",
        "timestamp": "2025-06-15T15:06:45Z",
        "data": {
            "id": rid,
            "status": "cancelled",
            "created_at": AT,
            "expires_at": AT + 86_400,
            "in_progress_at": None,
            "ended_at": AT + 5,
        },
    }


def test_no_event_without_its_status_change(
    db: Database, key: ApiKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    [rid] = add(db, key, 1)

    def broken(*_: object) -> int:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(outbox, "add_request_events", broken)
    with pytest.raises(RuntimeError):
        cancel_request(db, key.id, rid, AT + 5)
    assert get_request(db, key.id, rid).status == Status.REGISTERED  # rolled back together
    assert events(db) == []


def test_expiry_writes_expired_events(db: Database, key: ApiKey) -> None:
    soon = add(db, key, 2, completion_window="10m")
    add(db, key, 1, webhook=None, completion_window="10m")
    later = add(db, key, 1)
    assert jobs.expire_overdue(db, AT + 601) == 3
    assert kinds(db) == [("request.expired", rid) for rid in soon]
    assert later[0] not in {e.object_id for e in events(db)}


def _job(db: Database, ids: list[str]) -> str:
    job = Job(
        id=new_id(),
        model="m",
        deployment="d",
        status=JobStatus.CREATED,
        manifest_key="k",
        request_count=len(ids),
        attempts=0,
        created_at=AT,
        prompt_tokens=0,
        completion_tokens=0,
    )
    assert jobs.create_job(db, job, ids, AT + 1) == len(ids)
    return job.id


def test_outcomes_and_failed_jobs_write_events(db: Database, key: ApiKey) -> None:
    done, failed, left = add(db, key, 3)
    job_id = _job(db, [done, failed, left])
    outcomes = [
        jobs.Outcome(done, Status.COMPLETED, 3, 4, Decimal("0.001"), None, None),
        jobs.Outcome(failed, Status.FAILED, 3, 0, Decimal(0), "invalid_request", "bad"),
    ]
    assert jobs.apply_outcomes(db, job_id, "chunk", outcomes, AT + 10) == 2
    assert jobs.apply_outcomes(db, job_id, "chunk", outcomes, AT + 11) == 0  # once only
    assert jobs.fail_job(db, job_id, ErrorCode.JOB_FAILED, "stopped", AT + 20) == 1
    assert kinds(db) == [
        ("request.completed", done),
        ("request.failed", failed),
        ("request.failed", left),
    ]
    data = json.loads(events(db)[0].payload)["data"]
    assert (data["status"], data["in_progress_at"], data["ended_at"]) == (
        "completed",
        AT + 1,
        AT + 10,
    )


def test_cancelling_a_batch_writes_its_event_and_its_requests(db: Database, key: ApiKey) -> None:
    hooked = add(db, key, 2)
    quiet = add(db, key, 1, webhook=None)
    batch = batches.create_batch(
        db, key.id, BatchCreate(requests_ids=hooked + quiet, webhook="https://b.example/h"), AT
    )
    batches.cancel_batch(db, key.id, batch.id, AT + 3)
    assert kinds(db) == [
        ("request.cancelled", hooked[0]),
        ("request.cancelled", hooked[1]),
        ("batch.cancelled", batch.id),
    ]
    assert events(db)[-1].target == "https://b.example/h"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("completed", "batch.completed"), ("failed", "batch.failed"), ("publish", "batch.failed")],
)
def test_a_batch_that_ends_writes_one_event(
    db: Database, key: ApiKey, finish: str, expected: str
) -> None:
    ids = add(db, key, 1, webhook=None)
    batch = batches.create_batch(db, key.id, BatchCreate(requests_ids=ids, webhook=HOOK), AT)
    for _ in range(2):  # the second finish is a no-op: no second event
        if finish == "publish":
            batches.fail_publish(db, batch.id, "publish_failed", "gone", AT + 9)
        else:
            batches.finish_batch(db, batch.id, Status(finish), "results/x", AT + 9)
    assert kinds(db) == [(expected, batch.id)]
    assert json.loads(events(db)[0].payload)["data"]["status"] == Status(
        "failed" if finish == "publish" else finish
    )


def test_a_batch_with_an_expired_request_ends_expired(db: Database, key: ApiKey) -> None:
    ids = add(db, key, 2, webhook=None, completion_window="10m")
    batch = batches.create_batch(db, key.id, BatchCreate(requests_ids=ids, webhook=HOOK), AT)
    jobs.expire_overdue(db, AT + 601)
    batches.finish_batch(db, batch.id, Status.FAILED, "results/x", AT + 700)
    assert kinds(db) == [("batch.expired", batch.id)]


def test_batches_without_a_webhook_write_nothing(db: Database, key: ApiKey) -> None:
    ids = add(db, key, 1, webhook=None)
    batch = batches.create_batch(db, key.id, BatchCreate(requests_ids=ids), AT)
    batches.finish_batch(db, batch.id, Status.COMPLETED, "results/x", AT + 9)
    assert events(db) == []
