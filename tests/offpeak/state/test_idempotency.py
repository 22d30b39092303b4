import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from offpeak.clock import now
from offpeak.errors import Conflict, IdempotencyKeyInProgress
from offpeak.state import idempotency as idem
from offpeak.state.committer import GroupCommitter
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.requests import list_requests, new_request_row
from tests.utils.factories import request_create

ROUTE = "POST /v1/requests"
LEASE = 30


@pytest.fixture
def key_id(db: Database) -> str:
    return create_key(db, "idem", 10.0)[0].id


def claimed(db: Database, key_id: str, at: int, key: str = "k1") -> idem.Claim:
    held = idem.claim(db, key_id, ROUTE, key, at=at, lease=LEASE)
    assert isinstance(held, idem.Claim)
    return held


def stored(db: Database, key_id: str, at: int, key: str = "k1") -> idem.Stored:
    found = idem.claim(db, key_id, ROUTE, key, at=at, lease=LEASE)
    assert isinstance(found, idem.Stored)
    return found


def answer(db: Database, held: idem.Claim, response: str = "{}") -> bool:
    return idem.complete(db, held, body_sha256="ab" * 32, status=201, response=response)


def test_first_claim_owns_the_key_and_a_retry_gets_the_stored_answer(
    db: Database, key_id: str
) -> None:
    assert answer(db, claimed(db, key_id, 1000), '{"a":1}')
    found = stored(db, key_id, 1010)
    assert (found.body_sha256, found.status, found.response) == ("ab" * 32, 201, '{"a":1}')
    assert idem.check_replay(found, "ab" * 32, "k1", 1010) == (201, '{"a":1}')


def test_a_retry_with_another_body_is_a_conflict(db: Database, key_id: str) -> None:
    answer(db, claimed(db, key_id, 1000))
    with pytest.raises(Conflict) as caught:
        idem.check_replay(stored(db, key_id, 1001), "cd" * 32, "k1", 1001)
    assert caught.value.code == "idempotency_key_reused"


def test_a_retry_while_the_first_runs_is_in_progress_until_its_lease_ends(
    db: Database, key_id: str
) -> None:
    claimed(db, key_id, 1000)
    found = stored(db, key_id, 1010)
    assert found.status is None and found.lease_until == 1000 + LEASE
    with pytest.raises(IdempotencyKeyInProgress) as caught:
        idem.check_replay(found, "", "k1", 1010)
    assert caught.value.code == "idempotency_key_in_progress"
    # The retry is told when the key is answered or free: the first second past the lease.
    assert caught.value.retry_after == LEASE - 10 + 1


def test_keys_are_per_api_key_and_per_route(db: Database, key_id: str) -> None:
    other = create_key(db, "other", 10.0)[0].id
    assert isinstance(idem.claim(db, key_id, ROUTE, "k1", at=1000), idem.Claim)
    assert isinstance(idem.claim(db, other, ROUTE, "k1", at=1000), idem.Claim)
    assert isinstance(idem.claim(db, key_id, "POST /v1/batches", "k1", at=1000), idem.Claim)


def test_a_released_claim_lets_the_retry_do_the_work(db: Database, key_id: str) -> None:
    idem.release(db, claimed(db, key_id, 1000))
    claimed(db, key_id, 1001)


def test_an_answer_expires_after_the_ttl(db: Database, key_id: str) -> None:
    answer(db, claimed(db, key_id, 1000))
    stored(db, key_id, 1000 + idem.TTL_SECONDS - 1)
    claimed(db, key_id, 1001 + idem.TTL_SECONDS)


def test_the_default_lease_is_tens_of_seconds_not_minutes() -> None:
    assert 10 <= idem.LEASE_SECONDS <= 60


def test_a_claim_left_by_a_dead_handler_is_taken_over_after_the_lease(
    db: Database, key_id: str
) -> None:
    dead = claimed(db, key_id, 1000)  # its process was killed: no renewal, no answer
    stored(db, key_id, 1000 + LEASE)
    retry = claimed(db, key_id, 1001 + LEASE)
    assert retry.owner != dead.owner
    # Should the first come back after all, it can neither answer nor drop the new claim.
    assert not idem.renew(db, dead, 1002 + LEASE, lease=LEASE)
    assert not answer(db, dead, '{"late":1}')
    idem.release(db, dead)
    assert stored(db, key_id, 1003 + LEASE).status is None
    assert answer(db, retry, '{"retry":1}')
    assert stored(db, key_id, 1004 + LEASE).response == '{"retry":1}'


def test_a_live_handler_renewing_its_lease_keeps_the_key_past_the_first_lease(
    db: Database, key_id: str
) -> None:
    live = claimed(db, key_id, 1000)
    for beat in range(1010, 1100, 10):  # a long upload, renewing every third of the lease
        assert idem.renew(db, live, beat, lease=LEASE)
    found = stored(db, key_id, 1095)
    with pytest.raises(IdempotencyKeyInProgress) as caught:
        idem.check_replay(found, "", "k1", 1095)
    assert caught.value.retry_after == 1090 + LEASE - 1095 + 1
    assert answer(db, live)
    assert stored(db, key_id, 1200).status == 201


def test_an_answered_claim_is_never_taken_over_within_the_ttl(db: Database, key_id: str) -> None:
    answer(db, claimed(db, key_id, 1000))
    assert stored(db, key_id, 1000 + 10 * LEASE).status == 201


def test_concurrent_claims_have_exactly_one_winner(db: Database, key_id: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: idem.claim(db, key_id, ROUTE, "k1", at=1000), range(16)))
    assert sum(isinstance(result, idem.Claim) for result in results) == 1


def test_concurrent_retries_take_a_dead_claim_over_exactly_once(db: Database, key_id: str) -> None:
    claimed(db, key_id, 1000)
    at = 1001 + LEASE

    def retry(_: int) -> idem.Claim | idem.Stored | None:
        try:
            return idem.claim(db, key_id, ROUTE, "k1", at=at, lease=LEASE)
        except IdempotencyKeyInProgress:  # lost every round of the race: also a 409
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(retry, range(16)))
    assert sum(isinstance(result, idem.Claim) for result in results) == 1


def insert_with_answer(db: Database, row: dict[str, Any], held: idem.Claim) -> BaseException | None:
    """The route's insert through the group committer, its answer in the same transaction."""
    step = idem.answer_on(db.dialect, held, body_sha256="ab" * 32, status=201, response="{}")

    async def main() -> BaseException | None:
        committer = GroupCommitter(db)
        try:
            await committer.insert(row, step)
            return None
        except Exception as exc:
            return exc
        finally:
            await committer.close()

    return asyncio.run(main())


def test_the_answer_is_stored_in_the_transaction_that_inserts_the_request(
    db: Database, key_id: str
) -> None:
    row = new_request_row(key_id, request_create("hi"), now())
    assert insert_with_answer(db, row, claimed(db, key_id, 1000)) is None
    assert [r.id for r in list_requests(db, key_id)] == [row["id"]]
    # Nothing is left to store after the insert: a retry, however late, gets the answer.
    assert stored(db, key_id, 1000 + 10 * LEASE).status == 201


def test_a_handler_whose_claim_was_taken_over_creates_nothing(db: Database, key_id: str) -> None:
    # Paused (or cut off) past its lease: the retry took over and created the request.
    stalled = claimed(db, key_id, 1000)
    retry = claimed(db, key_id, 1001 + LEASE)
    first = new_request_row(key_id, request_create("hi"), now())
    second = new_request_row(key_id, request_create("hi"), now())
    assert insert_with_answer(db, second, retry) is None
    failed = insert_with_answer(db, first, stalled)  # the stalled one resumes
    assert isinstance(failed, IdempotencyKeyInProgress)
    assert [r.id for r in list_requests(db, key_id)] == [second["id"]]


def test_racing_handlers_on_one_key_insert_one_request(db: Database, key_id: str) -> None:
    # A stalled owner and the retry that took its claim over commit at the same moment.
    stalled = claimed(db, key_id, 1000)
    retry = claimed(db, key_id, 1001 + LEASE)
    rows = [new_request_row(key_id, request_create("hi"), now()) for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[BaseException | None] = [None, None]

    def run(index: int, held: idem.Claim) -> None:
        start.wait()
        outcomes[index] = insert_with_answer(db, rows[index], held)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate([stalled, retry])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes[1] is None and isinstance(outcomes[0], IdempotencyKeyInProgress)
    assert [r.id for r in list_requests(db, key_id)] == [rows[1]["id"]]


def test_purge_deletes_expired_keys_only(db: Database, key_id: str) -> None:
    claimed(db, key_id, 1000, "old")
    claimed(db, key_id, 5000, "new")
    assert idem.purge(db, before=2000) == 1
    claimed(db, key_id, 5001, "old")
    stored(db, key_id, 5001, "new")
