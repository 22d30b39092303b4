"""A live uvicorn server of the API for each stack: SQLite + folder, PostgreSQL + S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from offpeak.state.db import Database, upgrade
from offpeak.state.keys import create_key
from tests.conftest import new_postgres_database, new_s3_url
from tests.utils.services import free_port, wait_for

OFFPEAK = Path(sys.executable).with_name("offpeak")
MAX_BODY_BYTES = 256 * 1024
MAX_DATASET_BYTES = 512 * 1024
OPENAI_MAX_FILE_BYTES = 1024 * 1024
OPENAI_MAX_BATCH_LINES = 50
ANTHROPIC_MAX_BATCH_BYTES = 2 * MAX_BODY_BYTES  # above the body limit: it is its own


@dataclass
class LiveApi:
    """A running API process and what the tests need to reach it."""

    base_url: str
    env: dict[str, str]
    db: Database
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def new_key(self, credits: float = 10.0, name: str = "test") -> str:
        return create_key(self.db, name, credits)[1]

    def client(self, key: str | None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def start_api(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`offpeak db upgrade`, then `offpeak api`, as an operator starts it."""
    upgrade(env["OFFPEAK_DATABASE_URL"])
    port = free_port()
    process = subprocess.Popen(
        [str(OFFPEAK), "api", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"API exited with {process.returncode}:\n{stderr}")
        return httpx.get(f"{base_url}/healthz").status_code == 200

    wait_for(healthy, "the API server", timeout=60)
    return process, base_url


def stop_api(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stack_env(stack: str, data_dir: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    env = {
        "OFFPEAK_DATA_DIR": str(data_dir),
        "OFFPEAK_SEAL_INTERVAL": "0.3",
        "OFFPEAK_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "OFFPEAK_MAX_DATASET_BYTES": str(MAX_DATASET_BYTES),
        "OFFPEAK_OPENAI_MAX_FILE_BYTES": str(OPENAI_MAX_FILE_BYTES),
        "OFFPEAK_OPENAI_MAX_BATCH_LINES": str(OPENAI_MAX_BATCH_LINES),
        "OFFPEAK_ANTHROPIC_MAX_BATCH_BYTES": str(ANTHROPIC_MAX_BATCH_BYTES),
        # Where `s3://` datasets are read from, whatever the object store is.
        "OFFPEAK_S3_ENDPOINT_URL": request.getfixturevalue("s3_endpoint"),
    }
    if stack == "postgres-s3":
        env["OFFPEAK_DATABASE_URL"] = new_postgres_database(
            request.getfixturevalue("postgres_root")
        )
        env["OFFPEAK_STORAGE_URL"] = new_s3_url()
    else:
        env["OFFPEAK_DATABASE_URL"] = f"sqlite:///{data_dir / 'offpeak.db'}"
    return env


@pytest.fixture(scope="session", params=["sqlite-local", "postgres-s3"])
def live_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """One API server per stack for the whole test run."""
    env = stack_env(request.param, tmp_path_factory.mktemp(request.param), request)
    process, base_url = start_api(env)
    db = Database(env["OFFPEAK_DATABASE_URL"])
    try:
        yield LiveApi(base_url, env, db, process)
    finally:
        stop_api(process)
        db.dispose()


@pytest.fixture
def key(live_api: LiveApi) -> str:
    return live_api.new_key()


@pytest.fixture
def api(live_api: LiveApi, key: str) -> Iterator[httpx.Client]:
    """A client of the live API authenticated with a fresh key."""
    with live_api.client(key) as client:
        yield client
