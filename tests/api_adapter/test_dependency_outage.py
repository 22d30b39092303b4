"""A dependency going away and coming back (issue 16 item 6), on a PostgreSQL cluster and
an S3 server of the test's own, so that stopping them disturbs no other test.

While one is down every call answers 503 with its machine-readable code and
`Retry-After`, in the route's dialect; `/healthz` stays 200; the log has one line for the
outage and one for the recovery, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from offpeak.state.db import Database, upgrade
from offpeak.state.keys import create_key
from offpeak.storage import S3Store
from tests.api_adapter.helpers import chat_body
from tests.conftest import new_postgres_database, new_s3_url
from tests.utils.services import _pg_bin, free_port, postgres_server, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.live]
OFFPEAK = Path(sys.executable).with_name("offpeak")


class Postgres:
    """Stop and start the cluster behind ``root`` (a URL from postgres_server)."""

    def __init__(self, root: str) -> None:
        plain = root.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
            self.data = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
            # Kept in postgresql.auto.conf, so a plain `pg_ctl start` listens where it did.
            for name in ("port", "listen_addresses", "unix_socket_directories"):
                value = conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")

    def _pg_ctl(self, *args: str) -> None:
        command = [str(_pg_bin() / "pg_ctl"), "-D", self.data, "-w", *args]
        if os.geteuid() == 0:  # the cluster belongs to the postgres user
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", f"{self.data}/../restart.log", "start")


class Moto:
    """A moto S3 server that can be stopped and started again at the same address."""

    def __init__(self) -> None:
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = self.endpoint.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: httpx.get(f"{self.endpoint}/moto-api/").status_code < 500, "moto")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextmanager
def api_server(env: dict[str, str], log: Path) -> Iterator[str]:
    upgrade(env["OFFPEAK_DATABASE_URL"])
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(OFFPEAK), "api", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base_url}/healthz").status_code == 200, "the API", 60)
        yield base_url
    finally:
        process.terminate()
        process.wait(30)


def _unavailable(response: httpx.Response, code: str, *, openai: bool = False) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    if openai:
        assert body["error"]["code"] == code
        assert body["error"]["type"] == "server_error"
    else:
        assert body["code"] == code


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Postgres, Moto, dict[str, str]]]:
    s3 = Moto()
    s3.start()
    try:
        with postgres_server() as root:
            env = {
                "OFFPEAK_DATA_DIR": str(tmp_path),
                "OFFPEAK_DATABASE_URL": new_postgres_database(root),
                "OFFPEAK_STORAGE_URL": new_s3_url(),
                "OFFPEAK_S3_ENDPOINT_URL": s3.endpoint,
                "OFFPEAK_S3_REGION": "us-east-1",
                "OFFPEAK_SEAL_INTERVAL": "0.3",
            }
            yield Postgres(root), s3, env
    finally:
        s3.stop()


def _new_key(env: dict[str, str]) -> str:
    db = Database(env["OFFPEAK_DATABASE_URL"])
    try:
        return create_key(db, "outage", 10)[1]
    finally:
        db.dispose()


def _one_line_each(log: Path, down: str, up: str) -> None:
    text = log.read_text()
    assert text.count(down) == 1, text[-3000:]
    assert text.count(up) == 1, text[-3000:]
    assert "Exception in ASGI application" not in text, text[-3000:]
    assert "could not commit request" not in text, text[-3000:]


def test_the_database_stopped_and_restarted(
    stack: tuple[Postgres, Moto, dict[str, str]], tmp_path: Path
) -> None:
    postgres, _, env = stack
    log = tmp_path / "api.log"
    with api_server(env, log) as base_url:
        api = httpx.Client(base_url=base_url, headers={"X-API-Key": _new_key(env)}, timeout=30)
        created = api.post("/v1/requests", json={"request_body": chat_body()})
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]

        postgres.stop()
        try:
            for _ in range(5):
                _unavailable(api.get(f"/v1/requests/{request_id}"), "database_unavailable")
                _unavailable(
                    api.post("/v1/requests", json={"request_body": chat_body()}),
                    "database_unavailable",
                )
                _unavailable(api.get("/openai/v1/batches"), "database_unavailable", openai=True)
                stranger = httpx.get(f"{base_url}/v1/batches", headers={"X-API-Key": "op-x"})
                _unavailable(stranger, "database_unavailable")
            assert httpx.get(f"{base_url}/healthz").status_code == 200  # liveness
        finally:
            postgres.start()

        wait_for(lambda: api.get(f"/v1/requests/{request_id}").status_code == 200, "recovery")
        assert api.post("/v1/requests", json={"request_body": chat_body()}).status_code == 201
    _one_line_each(log, "the database is unavailable", "the database is available again")


def test_the_object_store_stopped_and_restarted(
    stack: tuple[Postgres, Moto, dict[str, str]], tmp_path: Path
) -> None:
    _, s3, env = stack
    log = tmp_path / "api.log"
    line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    with api_server(env, log) as base_url:
        api = httpx.Client(base_url=base_url, headers={"X-API-Key": _new_key(env)}, timeout=60)

        def upload() -> httpx.Response:
            return api.post(
                "/openai/v1/files", files={"file": ("in.jsonl", line)}, data={"purpose": "batch"}
            )

        assert upload().status_code == 200, upload().text
        s3.stop()
        try:
            for _ in range(3):
                _unavailable(upload(), "storage_unavailable", openai=True)
            assert httpx.get(f"{base_url}/healthz").status_code == 200
        finally:
            s3.start()
        # moto keeps nothing across a restart: the bucket comes back empty.
        S3Store(
            env["OFFPEAK_STORAGE_URL"], endpoint_url=s3.endpoint, region="us-east-1"
        ).ensure_bucket()
        wait_for(lambda: upload().status_code == 200, "recovery", 60)
    _one_line_each(log, "the object store is unavailable", "the object store is available again")
