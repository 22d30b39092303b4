"""The auth cache: a revocation committed by this process refuses the key at once; one
committed elsewhere (another replica, `offpeak keys revoke`) within auth_cache_seconds."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import update

from api_adapter.app import create_app
from api_adapter.deps import AuthCache
from offpeak.config import load_settings
from offpeak.errors import AuthenticationError
from offpeak.state import keys
from offpeak.state.db import Database, upgrade
from offpeak.state.keys import create_key, revoke_key
from offpeak.state.models import ApiKey
from tests.api_adapter.conftest import OFFPEAK, LiveApi, stack_env
from tests.utils.services import free_port, wait_for

MARGIN = 3.0  # seconds allowed beyond the TTL: a loaded machine, a slow poll


def test_a_key_is_read_once_per_ttl(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    key, secret = create_key(db, "k", 10)
    reads: list[str | None] = []
    read = keys.authenticate
    monkeypatch.setattr(keys, "authenticate", lambda db, s: reads.append(s) or read(db, s))
    cache = AuthCache(ttl=60)
    assert [cache.authenticate(db, secret).id for _ in range(3)] == [key.id] * 3
    assert reads == [secret]


@pytest.mark.parametrize("ttl", [0, -1])
def test_no_ttl_caches_nothing(db: Database, ttl: float) -> None:
    _, secret = create_key(db, "k", 10)
    cache = AuthCache(ttl)
    cache.authenticate(db, secret)
    assert cache.cached(secret) is None


def test_a_revocation_committed_in_this_process_drops_the_key_at_once(
    db: Database, database_url: str
) -> None:
    key, secret = create_key(db, "k", 10)
    kept, other_secret = create_key(db, "other", 10)
    cache = AuthCache(ttl=60)
    cache.authenticate(db, secret)
    cache.authenticate(db, other_secret)
    # Through another handle on the same database: what counts is the process.
    elsewhere = Database(database_url)
    try:
        revoke_key(elsewhere, key.prefix)
    finally:
        elsewhere.dispose()
    assert cache.cached(secret) is None
    with pytest.raises(AuthenticationError, match="revoked"):
        cache.authenticate(db, secret)
    still = cache.cached(other_secret)
    assert still is not None and still.id == kept.id  # the others stay cached


def test_a_revocation_committed_during_a_read_is_not_remembered_stale(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = create_key(db, "k", 10)
    read = keys.authenticate

    def read_then_revoked(db: Database, secret: str | None) -> ApiKey:
        found = read(db, secret)  # still active when read...
        revoke_key(db, key.id)  # ...revoked before the cache stores it
        return found

    monkeypatch.setattr(keys, "authenticate", read_then_revoked)
    cache = AuthCache(ttl=60)
    assert cache.authenticate(db, secret).id == key.id  # a call racing the revocation
    assert cache.cached(secret) is None
    monkeypatch.setattr(keys, "authenticate", read)
    with pytest.raises(AuthenticationError, match="revoked"):
        cache.authenticate(db, secret)


def test_a_revocation_from_another_process_counts_within_the_ttl(db: Database) -> None:
    key, secret = create_key(db, "k", 10)
    cache = AuthCache(ttl=0.5)
    cache.authenticate(db, secret)
    # What another process's revocation looks like from here: a row changed under us.
    with db.session() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=1))
    stale = cache.cached(secret)
    assert stale is not None and stale.id == key.id  # bounded staleness, not immediate
    time.sleep(0.6)
    with pytest.raises(AuthenticationError, match="revoked"):
        cache.authenticate(db, secret)


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api_in_this_process(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Database]]:
    """The API served by uvicorn on a thread of the test process, with a long auth TTL
    (so only dropping the entry can explain a prompt 401), and a handle on its database."""
    env = stack_env(stack, tmp_path, request)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upgrade(env["OFFPEAK_DATABASE_URL"])
    app = create_app(load_settings(auth_cache_seconds=10))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    db = Database(env["OFFPEAK_DATABASE_URL"])
    try:
        wait_for(lambda: httpx.get(f"{base_url}/healthz").status_code == 200, "the API")
        yield base_url, db
    finally:
        server.should_exit = True
        thread.join(30)
        db.dispose()


@pytest.mark.live
def test_a_live_api_refuses_a_key_revoked_in_its_process_at_once(
    api_in_this_process: tuple[str, Database],
) -> None:
    base_url, db = api_in_this_process
    key, secret = create_key(db, "k", 10)
    with httpx.Client(base_url=base_url, headers={"X-API-Key": secret}) as client:
        for _ in range(3):  # the key is cached now
            assert client.get("/v1/models").status_code == 200
        revoke_key(db, key.id)
        answers = [client.get("/v1/models").status_code for _ in range(5)]
    assert answers == [401] * 5


def test_a_live_api_refuses_a_key_revoked_by_the_cli_within_the_ttl(
    live_api: LiveApi,
) -> None:
    ttl = load_settings().auth_cache_seconds  # the live API runs with the default
    key, secret = create_key(live_api.db, "k", 10)
    with live_api.client(secret) as client:
        assert client.get("/v1/models").status_code == 200  # cached now
        subprocess.run(
            [str(OFFPEAK), "keys", "revoke", key.id],
            env={**os.environ, **live_api.env},
            check=True,
            capture_output=True,
            timeout=60,
        )
        revoked = time.monotonic()
        deadline = revoked + ttl + MARGIN
        while (status := client.get("/v1/models").status_code) == 200:
            assert time.monotonic() < deadline, f"still accepted {ttl + MARGIN:.1f} s on"
            time.sleep(0.05)
        assert status == 401
        assert [client.get("/v1/models").status_code for _ in range(3)] == [401] * 3
