from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from sqlalchemy import func, select

from offpeak.errors import Conflict, NotFound
from offpeak.ids import new_id
from offpeak.schemas import BatchCreate, RequestCounts, Status
from offpeak.state.batches import (
    cancel_batch,
    create_batch,
    find_batch,
    get_batch,
    list_batches,
    request_counts,
)
from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Batch
from offpeak.state.requests import list_requests
from tests.utils.factories import add_requests, request_rows, set_status

AT = 1_750_000_000


def batch_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Batch)) or 0


def test_create_batch_claims_every_request(db: Database, key: ApiKey) -> None:
    ids = add_requests(db, key.id, 3, at=AT)
    batch = create_batch(
        db,
        key.id,
        BatchCreate(requests_ids=ids, metadata={"job": "j1"}, webhook="https://example.com/h"),
        AT + 10,
    )
    assert batch.status == Status.REGISTERED
    assert batch.created_at == AT + 10
    assert batch.meta == {"job": "j1"}
    assert batch.webhook == "https://example.com/h"
    assert {r.batch_id for r in request_rows(db, ids).values()} == {batch.id}
    assert get_batch(db, key.id, batch.id).id == batch.id
    assert [r.id for r in list_requests(db, key.id, batch_id=batch.id)] == ids


def test_batch_expires_with_its_latest_request(db: Database, key: ApiKey) -> None:
    short = add_requests(db, key.id, 2, at=AT, completion_window="1h")
    long = add_requests(db, key.id, 1, at=AT, completion_window="72h")
    batch = create_batch(db, key.id, BatchCreate(requests_ids=short + long), AT)
    assert batch.expires_at == AT + 72 * 3600


def test_create_batch_with_a_foreign_request_is_not_found_and_writes_nothing(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    mine = add_requests(db, key.id, 2)
    [theirs] = add_requests(db, other_key.id)
    with pytest.raises(NotFound, match=theirs) as caught:
        create_batch(db, key.id, BatchCreate(requests_ids=[*mine, theirs]), AT)
    assert caught.value.code == "request_not_found"
    assert not any(i in caught.value.message for i in mine)
    assert batch_count(db) == 0
    assert {r.batch_id for r in request_rows(db, [*mine, theirs]).values()} == {None}


def test_create_batch_with_a_missing_request_names_it(db: Database, key: ApiKey) -> None:
    ids = add_requests(db, key.id, 2)
    missing = new_id()
    with pytest.raises(NotFound, match=missing):
        create_batch(db, key.id, BatchCreate(requests_ids=[*ids, missing]), AT)
    assert batch_count(db) == 0
    assert {r.batch_id for r in request_rows(db, ids).values()} == {None}


def test_create_batch_with_many_missing_requests_names_the_first_ten(
    db: Database, key: ApiKey
) -> None:
    missing = sorted(new_id() for _ in range(13))
    with pytest.raises(NotFound) as caught:
        create_batch(db, key.id, BatchCreate(requests_ids=missing), AT)
    assert all(i in caught.value.message for i in missing[:10])
    assert missing[10] not in caught.value.message
    assert caught.value.message.endswith("and 3 more")


def test_create_batch_with_a_request_already_in_a_batch_conflicts(
    db: Database, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 3)
    first = create_batch(db, key.id, BatchCreate(requests_ids=ids[:2]), AT)
    with pytest.raises(Conflict, match=ids[1]) as caught:
        create_batch(db, key.id, BatchCreate(requests_ids=ids[1:]), AT)
    assert caught.value.code == "request_already_in_batch"
    assert batch_count(db) == 1
    rows = request_rows(db, ids)
    assert [rows[i].batch_id for i in ids] == [first.id, first.id, None]


def test_concurrent_overlapping_batches_exactly_one_succeeds(db: Database, key: ApiKey) -> None:
    threads, rounds = 4, 3
    for _ in range(rounds):
        shared = add_requests(db, key.id, 2)
        sets = [shared + add_requests(db, key.id, 3) for _ in range(threads)]
        start = Barrier(threads)

        def create(ids: list[str], start: Barrier = start) -> Batch | str:
            start.wait()
            try:
                return create_batch(db, key.id, BatchCreate(requests_ids=ids), AT)
            except Conflict as exc:
                return exc.code

        with ThreadPoolExecutor(threads) as pool:
            outcomes = list(pool.map(create, sets))
        winners = [(o, ids) for o, ids in zip(outcomes, sets, strict=True) if isinstance(o, Batch)]
        assert len(winners) == 1
        assert outcomes.count("request_already_in_batch") == threads - 1
        [(batch, claimed)] = winners
        rows = request_rows(db, {i for ids in sets for i in ids})
        for request_id, row in rows.items():
            assert row.batch_id == (batch.id if request_id in claimed else None)
    assert batch_count(db) == rounds


def test_get_batch_of_another_key_is_not_found(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    batch = create_batch(db, key.id, BatchCreate(requests_ids=add_requests(db, key.id)), AT)
    with pytest.raises(NotFound) as caught:
        get_batch(db, other_key.id, batch.id)
    assert caught.value.code == "batch_not_found"
    assert find_batch(db, other_key.id, batch.id) is None
    assert find_batch(db, key.id, batch.id) is not None


def test_list_batches_pages_by_id_and_shows_only_the_callers(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    made = sorted(
        create_batch(db, key.id, BatchCreate(requests_ids=add_requests(db, key.id)), AT).id
        for _ in range(5)
    )
    create_batch(db, other_key.id, BatchCreate(requests_ids=add_requests(db, other_key.id)), AT)
    first = list_batches(db, key.id, limit=3)
    rest = list_batches(db, key.id, after=first[-1].id, limit=3)
    assert [b.id for b in first + rest] == made
    assert list_batches(db, key.id, after=made[-1]) == []


def test_request_counts_count_each_status(db: Database, key: ApiKey) -> None:
    ids = add_requests(db, key.id, 6)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=ids), AT)
    set_status(db, ids[:2], Status.COMPLETED)
    set_status(db, ids[2:3], Status.FAILED)
    set_status(db, ids[3:4], Status.IN_PROGRESS)
    empty = new_id()
    counts = request_counts(db, [batch.id, empty])
    assert counts[batch.id] == RequestCounts(
        total=6, registered=2, in_progress=1, completed=2, failed=1, cancelled=0
    )
    assert counts[empty] == RequestCounts()


def test_cancel_batch_cancels_its_requests_not_the_completed_ones(
    db: Database, key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 4)
    [outside] = add_requests(db, key.id)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=ids), AT)
    set_status(db, ids[:1], Status.COMPLETED)
    set_status(db, ids[1:2], Status.IN_PROGRESS)
    cancelled = cancel_batch(db, key.id, batch.id, AT + 60)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.ended_at == AT + 60
    rows = request_rows(db, [*ids, outside])
    assert [rows[i].status for i in ids] == ["completed", "cancelled", "cancelled", "cancelled"]
    assert rows[ids[0]].ended_at is None
    assert {rows[i].ended_at for i in ids[1:]} == {AT + 60}
    assert rows[outside].status == Status.REGISTERED
    assert request_counts(db, [batch.id])[batch.id] == RequestCounts(
        total=4, completed=1, cancelled=3
    )


def test_cancel_batch_twice_conflicts(db: Database, key: ApiKey) -> None:
    batch = create_batch(db, key.id, BatchCreate(requests_ids=add_requests(db, key.id)), AT)
    cancel_batch(db, key.id, batch.id, AT)
    with pytest.raises(Conflict, match="already cancelled") as caught:
        cancel_batch(db, key.id, batch.id, AT + 1)
    assert caught.value.code == "batch_not_cancellable"


def test_cancel_batch_of_another_key_is_not_found_and_leaves_it(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    ids = add_requests(db, key.id, 2)
    batch = create_batch(db, key.id, BatchCreate(requests_ids=ids), AT)
    with pytest.raises(NotFound):
        cancel_batch(db, other_key.id, batch.id, AT)
    assert get_batch(db, key.id, batch.id).status == Status.REGISTERED
    assert {r.status for r in request_rows(db, ids).values()} == {"registered"}
