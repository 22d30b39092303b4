"""Expected times in the state database: written per tick, read for requests and
batches from their model and minute of deadline."""

from __future__ import annotations

from sqlalchemy import update

from offpeak.plan.expected import Expected, minute_of
from offpeak.schemas import BatchCreate, Status
from offpeak.state import batches, expectations
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Request
from offpeak.state.requests import get_request
from tests.utils.factories import add_requests

AT = 1_750_000_000
MODEL = "llama-3.1-8b-instruct-fp16"


def set_status(db: Database, rid: str, status: Status, **values: int) -> None:
    with db.session(write=True) as session:
        session.execute(update(Request).where(Request.id == rid).values(status=status, **values))


def test_a_request_shows_its_units_times_while_it_waits_or_runs(db: Database, key: ApiKey) -> None:
    waiting, running, done = add_requests(db, key.id, 3, at=AT)
    row = get_request(db, key.id, waiting)
    assert expectations.for_request(db, row) == expectations.NOT_PLANNED
    minute = minute_of(row.expires_at)
    assert expectations.record(db, [Expected(MODEL, minute, AT + 600, AT + 900)], AT) == 1
    assert expectations.for_request(db, row) == expectations.Times(AT + 600, AT + 900)
    set_status(db, running, Status.IN_PROGRESS, in_progress_at=AT + 60)
    shown = expectations.for_request(db, get_request(db, key.id, running))
    assert shown == expectations.Times(AT + 60, AT + 900)  # it started when it did
    set_status(db, done, Status.COMPLETED, ended_at=AT + 70)
    assert expectations.for_request(db, get_request(db, key.id, done)) == expectations.NOT_PLANNED

    # The next tick rewrites the unit; one whose deadline has passed is dropped.
    expectations.record(db, [Expected(MODEL, minute, AT + 1200, None)], AT + 60)
    assert expectations.for_request(db, row) == expectations.Times(AT + 1200, None)
    expectations.record(db, [], row.expires_at + 120)
    assert expectations.for_request(db, row) == expectations.NOT_PLANNED


def test_a_batch_runs_from_its_first_unit_to_its_last_and_an_unplanned_one_hides_the_end(
    db: Database, key: ApiKey
) -> None:
    soon = add_requests(db, key.id, 2, at=AT, completion_window="1h")
    later = add_requests(db, key.id, 2, at=AT, completion_window="24h")
    batch = batches.create_batch(db, key.id, BatchCreate(requests_ids=soon + later), AT)
    other = batches.create_batch(
        db, key.id, BatchCreate(requests_ids=add_requests(db, key.id, 1, at=AT)), AT
    )
    m_soon, m_later = minute_of(AT + 3600), minute_of(AT + 86_400)
    expectations.record(db, [Expected(MODEL, m_soon, AT + 100, AT + 400)], AT)
    assert expectations.for_batches(db, [batch.id, other.id]) == {
        batch.id: expectations.Times(AT + 100, None)  # its 24 h requests are not planned
    }
    expectations.record(db, [Expected(MODEL, m_later, AT + 7200, AT + 9000)], AT)
    assert expectations.for_batches(db, [batch.id])[batch.id] == expectations.Times(
        AT + 100, AT + 9000
    )
    for rid in soon:
        set_status(db, rid, Status.COMPLETED, ended_at=AT + 300)
    assert expectations.for_batches(db, [batch.id])[batch.id] == expectations.Times(
        AT + 7200, AT + 9000
    )
