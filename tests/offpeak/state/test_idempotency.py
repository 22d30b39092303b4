from concurrent.futures import ThreadPoolExecutor

import pytest

from offpeak.errors import Conflict
from offpeak.state import idempotency as idem
from offpeak.state.db import Database
from offpeak.state.keys import create_key

ROUTE = "POST /v1/requests"


@pytest.fixture
def key_id(db: Database) -> str:
    return create_key(db, "idem", 10.0)[0].id


def test_first_claim_owns_the_key_and_a_retry_gets_the_stored_answer(
    db: Database, key_id: str
) -> None:
    assert idem.claim(db, key_id, ROUTE, "k1", at=1000) is None
    idem.complete(db, key_id, ROUTE, "k1", body_sha256="ab" * 32, status=201, response='{"a":1}')
    stored = idem.claim(db, key_id, ROUTE, "k1", at=1010)
    assert stored == idem.Stored("ab" * 32, 201, '{"a":1}')
    assert idem.check_replay(stored, "ab" * 32, "k1") == (201, '{"a":1}')


def test_a_retry_with_another_body_is_a_conflict(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "k1", at=1000)
    idem.complete(db, key_id, ROUTE, "k1", body_sha256="ab" * 32, status=201, response="{}")
    stored = idem.claim(db, key_id, ROUTE, "k1", at=1001)
    assert stored is not None
    with pytest.raises(Conflict) as caught:
        idem.check_replay(stored, "cd" * 32, "k1")
    assert caught.value.code == "idempotency_key_reused"


def test_a_retry_while_the_first_runs_is_a_conflict_in_progress(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "k1", at=1000)
    stored = idem.claim(db, key_id, ROUTE, "k1", at=1001)
    assert stored is not None and stored.status is None
    with pytest.raises(Conflict) as caught:
        idem.check_replay(stored, "", "k1")
    assert caught.value.code == "idempotency_key_in_progress"


def test_keys_are_per_api_key_and_per_route(db: Database, key_id: str) -> None:
    other = create_key(db, "other", 10.0)[0].id
    assert idem.claim(db, key_id, ROUTE, "k1", at=1000) is None
    assert idem.claim(db, other, ROUTE, "k1", at=1000) is None
    assert idem.claim(db, key_id, "POST /v1/batches", "k1", at=1000) is None


def test_a_released_claim_lets_the_retry_do_the_work(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "k1", at=1000)
    idem.release(db, key_id, ROUTE, "k1", at=1000)
    assert idem.claim(db, key_id, ROUTE, "k1", at=1001) is None


def test_an_answer_expires_after_the_ttl(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "k1", at=1000)
    idem.complete(db, key_id, ROUTE, "k1", body_sha256="ab" * 32, status=201, response="{}")
    assert idem.claim(db, key_id, ROUTE, "k1", at=1000 + idem.TTL_SECONDS - 1) is not None
    assert idem.claim(db, key_id, ROUTE, "k1", at=1001 + idem.TTL_SECONDS) is None


def test_an_abandoned_claim_is_taken_over_after_the_lease(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "k1", at=1000)
    assert idem.claim(db, key_id, ROUTE, "k1", at=1000 + idem.LEASE_SECONDS) is not None
    assert idem.claim(db, key_id, ROUTE, "k1", at=1001 + idem.LEASE_SECONDS) is None
    # The late first request's release leaves the new owner's claim alone.
    idem.release(db, key_id, ROUTE, "k1", at=1000)
    assert idem.claim(db, key_id, ROUTE, "k1", at=1002 + idem.LEASE_SECONDS) is not None


def test_concurrent_claims_have_exactly_one_winner(db: Database, key_id: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: idem.claim(db, key_id, ROUTE, "k1", at=1000), range(16)))
    assert sum(result is None for result in results) == 1


def test_purge_deletes_expired_keys_only(db: Database, key_id: str) -> None:
    idem.claim(db, key_id, ROUTE, "old", at=1000)
    idem.claim(db, key_id, ROUTE, "new", at=5000)
    assert idem.purge(db, before=2000) == 1
    assert idem.claim(db, key_id, ROUTE, "old", at=5001) is None
    assert idem.claim(db, key_id, ROUTE, "new", at=5001) is not None
