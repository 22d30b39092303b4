import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from offpeak.errors import Conflict, NotFound
from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.state.requests import (
    cancel_request,
    get_request,
    insert_requests,
    list_requests,
    new_request_row,
)
from tests.utils.factories import MODEL, add_requests, request_create, set_status

AT = 1_750_000_000


def test_new_request_row_is_registered_with_its_deadline() -> None:
    create = request_create(
        "hi", completion_window="10m", metadata={"a": 1}, webhook="https://example.com/hook"
    )
    row = new_request_row("k" * 24, create, AT)
    assert row["status"] == "registered"
    assert row["model"] == MODEL
    assert row["expires_at"] == AT + 600
    assert row["meta"] == {"a": 1}
    assert row["webhook"] == "https://example.com/hook"
    assert row["segment"] is None
    assert json.loads(row["body"]) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.7,
        "top_p": 1.0,
        "n": 1,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "logprobs": False,
        "stream": False,
    }


def test_insert_then_get_request(db: Database, key: ApiKey) -> None:
    row = new_request_row(key.id, request_create("hi", metadata={"x": "y"}), AT)
    insert_requests(db, [row])
    stored = get_request(db, key.id, row["id"])
    assert stored.status == Status.REGISTERED
    assert stored.body == row["body"]
    assert stored.meta == {"x": "y"}
    assert (stored.created_at, stored.expires_at) == (AT, AT + 86_400)
    assert stored.batch_id is None


def test_insert_no_requests_is_a_no_op(db: Database, key: ApiKey) -> None:
    insert_requests(db, [])
    assert list_requests(db, key.id) == []


def test_get_request_of_another_key_is_not_found(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    [request_id] = add_requests(db, key.id)
    with pytest.raises(NotFound) as caught:
        get_request(db, other_key.id, request_id)
    assert caught.value.code == "request_not_found"


def test_get_unknown_request_is_not_found(db: Database, key: ApiKey) -> None:
    with pytest.raises(NotFound, match="0" * 24):
        get_request(db, key.id, "0" * 24)


def test_list_requests_pages_by_id_with_keyset_pagination(db: Database, key: ApiKey) -> None:
    ids = add_requests(db, key.id, 7)
    pages, after = [], None
    while page := list_requests(db, key.id, after=after, limit=3):
        pages.append([r.id for r in page])
        after = page[-1].id
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids


def test_list_requests_shows_only_the_callers_requests(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    mine = add_requests(db, key.id, 2)
    add_requests(db, other_key.id, 3)
    assert [r.id for r in list_requests(db, key.id)] == mine


def test_list_requests_filters_by_status(db: Database, key: ApiKey) -> None:
    ids = add_requests(db, key.id, 4)
    set_status(db, ids[:2], Status.COMPLETED)
    completed = list_requests(db, key.id, status=Status.COMPLETED)
    assert [r.id for r in completed] == ids[:2]
    registered = list_requests(db, key.id, status=Status.REGISTERED)
    assert [r.id for r in registered] == ids[2:]


def test_cancel_request_sets_cancelled_and_ended_at(db: Database, key: ApiKey) -> None:
    [request_id] = add_requests(db, key.id)
    cancelled = cancel_request(db, key.id, request_id, AT + 5)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.ended_at == AT + 5
    assert get_request(db, key.id, request_id).status == Status.CANCELLED


def test_cancel_request_in_progress_is_allowed(db: Database, key: ApiKey) -> None:
    [request_id] = add_requests(db, key.id)
    set_status(db, [request_id], Status.IN_PROGRESS)
    assert cancel_request(db, key.id, request_id, AT).status == Status.CANCELLED


def test_cancel_request_already_cancelled_conflicts(db: Database, key: ApiKey) -> None:
    [request_id] = add_requests(db, key.id)
    cancel_request(db, key.id, request_id, AT)
    with pytest.raises(Conflict, match="already cancelled") as caught:
        cancel_request(db, key.id, request_id, AT + 1)
    assert caught.value.code == "request_not_cancellable"
    assert get_request(db, key.id, request_id).ended_at == AT


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED])
def test_cancel_request_already_final_conflicts(db: Database, key: ApiKey, status: Status) -> None:
    [request_id] = add_requests(db, key.id)
    set_status(db, [request_id], status)
    with pytest.raises(Conflict, match=f"already {status.value}"):
        cancel_request(db, key.id, request_id, AT)
    assert get_request(db, key.id, request_id).status == status


def test_cancel_request_of_another_key_is_not_found_and_leaves_it(
    db: Database, key: ApiKey, other_key: ApiKey
) -> None:
    [request_id] = add_requests(db, key.id)
    with pytest.raises(NotFound):
        cancel_request(db, other_key.id, request_id, AT)
    assert get_request(db, key.id, request_id).status == Status.REGISTERED


def test_concurrent_cancels_exactly_one_wins(db: Database, key: ApiKey) -> None:
    threads = 8
    [request_id] = add_requests(db, key.id)
    start = Barrier(threads)

    def cancel(i: int) -> str:
        start.wait()
        try:
            cancel_request(db, key.id, request_id, AT + i)
        except Conflict as exc:
            return exc.code
        return "won"

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(cancel, range(threads)))
    assert outcomes.count("won") == 1
    assert outcomes.count("request_not_cancellable") == threads - 1
    winner = outcomes.index("won")
    assert get_request(db, key.id, request_id).ended_at == AT + winner
