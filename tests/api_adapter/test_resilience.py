"""The object store going away under a live API: nothing acknowledged is lost, sealing
resumes by itself, `/readyz` says what is down; and the API starts while S3 is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import Request
from offpeak.storage import S3Store
from tests.api_adapter.conftest import LiveApi, start_api, stop_api
from tests.api_adapter.helpers import chat_body
from tests.conftest import new_postgres_database, new_s3_url
from tests.utils.services import RestartableMoto

pytestmark = [pytest.mark.s3, pytest.mark.live]
SEALED_WITHIN = 90.0  # seconds after S3 returns; the writer backs off up to 30 s


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def segments(db: Database, ids: list[str]) -> dict[str, str | None]:
    with db.session() as session:
        query = select(Request.id, Request.segment).where(Request.id.in_(ids))
        return {row.id: row.segment for row in session.execute(query)}


def readyz(base_url: str) -> httpx.Response:
    return httpx.get(f"{base_url}/readyz", timeout=30)


@pytest.fixture
def moto() -> Iterator[RestartableMoto]:
    server = RestartableMoto()
    yield server
    server.stop()


def api_env(tmp_path: Path, database_url: str, endpoint: str) -> dict[str, str]:
    return {
        "OFFPEAK_DATA_DIR": str(tmp_path),
        "OFFPEAK_DATABASE_URL": database_url,
        "OFFPEAK_STORAGE_URL": new_s3_url(),
        "OFFPEAK_S3_ENDPOINT_URL": endpoint,
        "OFFPEAK_SEAL_INTERVAL": "0.3",
    }


class Load:
    """Clients submitting requests as fast as the API answers, until stopped."""

    def __init__(self, base_url: str, secret: str, clients: int = 4) -> None:
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(clients)
        self._runs = [self._pool.submit(self._run, base_url, secret) for _ in range(clients)]

    def _run(self, base_url: str, secret: str) -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": secret}, timeout=30) as api:
            while not self._stop.is_set():
                answer = api.post("/v1/requests", json={"request_body": chat_body("load")})
                if answer.status_code == 201:
                    self.acknowledged.append(answer.json()["id"])
                else:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")

    def stop(self) -> None:
        self._stop.set()
        for run in self._runs:
            run.result()
        self._pool.shutdown()


def test_sealing_resumes_by_itself_after_the_object_store_returns(
    tmp_path: Path, postgres_root: str, moto: RestartableMoto
) -> None:
    env = api_env(tmp_path, new_postgres_database(postgres_root), moto.endpoint)
    process, base_url = start_api(env)
    db = Database(env["OFFPEAK_DATABASE_URL"])
    try:
        load = Load(base_url, create_key(db, "load", 100.0)[1])
        try:
            time.sleep(1.5)
            before_outage = len(load.acknowledged)
            moto.stop()
            assert wait_for(lambda: "storage" in readyz(base_url).json()["down"], 30)
            during = len(load.acknowledged)
            time.sleep(3)  # still submitting: the database takes them
            assert len(load.acknowledged) > during
            moto.start()
            time.sleep(1)
        finally:
            load.stop()
        assert load.failures == []
        assert before_outage > 0
        ids = load.acknowledged

        def all_sealed() -> bool:
            return None not in segments(db, ids).values()

        assert wait_for(all_sealed, SEALED_WITHIN), "acknowledged requests left unsealed"
        assert len(segments(db, ids)) == len(ids)
        assert wait_for(lambda: readyz(base_url).status_code == 200, 30)
        # What was sealed after S3 returned is in the restarted (empty) server.
        store = S3Store(env["OFFPEAK_STORAGE_URL"], endpoint_url=moto.endpoint)
        written = set(store.list("requests/"))
        assert segments(db, ids[during:])[ids[-1]] in written
        assert process.poll() is None  # never restarted
    finally:
        stop_api(process)
        db.dispose()


def test_the_api_starts_while_the_object_store_is_down_and_seals_once_it_is_up(
    tmp_path: Path, moto: RestartableMoto
) -> None:
    moto.stop()
    env = api_env(tmp_path, f"sqlite:///{tmp_path / 'offpeak.db'}", moto.endpoint)
    process, base_url = start_api(env)
    db = Database(env["OFFPEAK_DATABASE_URL"])
    try:
        down = readyz(base_url)
        assert down.status_code == 503
        assert "storage" in down.json()["down"] and down.json()["database"]["ok"]
        secret = create_key(db, "early", 10.0)[1]
        with httpx.Client(base_url=base_url, headers={"X-API-Key": secret}) as api:
            answer = api.post("/v1/requests", json={"request_body": chat_body()})
        assert answer.status_code == 201, answer.text
        request_id = answer.json()["id"]
        moto.start()
        assert wait_for(lambda: segments(db, [request_id])[request_id], SEALED_WITHIN)
        assert wait_for(lambda: readyz(base_url).status_code == 200, 30)
    finally:
        stop_api(process)
        db.dispose()


def test_readyz_reports_every_part_when_all_answer(live_api: LiveApi) -> None:
    answer = readyz(live_api.base_url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["down"]) == ("ready", [])
    assert body["database"]["ok"] and body["storage"]["ok"] and body["sealing"]["ok"]
    sealing = body["sealing"]
    assert sealing["alive"] and sealing["unsealed_rows"] >= 0
    assert sealing["seconds_since_last_seal"] < sealing["max_lag_seconds"]
    paths = httpx.get(f"{live_api.base_url}/openapi.json").json()["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) >= {"200", "503"}
