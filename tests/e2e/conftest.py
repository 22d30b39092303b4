"""The whole stack as `offpeak serve` runs it, against the test run's Prefect server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from offpeak.state.db import Database
from offpeak.state.keys import create_key
from tests.utils.services import free_port, wait_for

OFFPEAK = Path(sys.executable).with_name("offpeak")
CHUNK_SIZE = 8


@dataclass
class Stack:
    base_url: str
    data_dir: Path
    db: Database
    log: Path
    pid: int  # of `offpeak serve`

    def new_key(self, credits: float = 10.0) -> str:
        return create_key(self.db, "e2e", credits)[1]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": key}, timeout=60)

    def object_path(self, key: str) -> Path:
        return self.data_dir / "objects" / key


@pytest.fixture(scope="session")
def stack(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    log = data_dir / "serve.log"
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "OFFPEAK_DATA_DIR": str(data_dir),
        "OFFPEAK_SCHEDULER_INTERVAL": "3",
        # Launches at once: the tests wait for outcomes, not for throughput (serve's 5 s
        # polls leave the engines more CPU; here nothing generates for long).
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "OFFPEAK_SCHEDULER_POLICY": "immediate",
        "OFFPEAK_SEAL_INTERVAL": "0.3",
        "OFFPEAK_CHUNK_SIZE": str(CHUNK_SIZE),
        "OFFPEAK_WEBHOOK_ALLOW_PRIVATE": "true",  # the tests' receivers are on loopback
    }
    env.pop("OFFPEAK_DATABASE_URL", None)
    env.pop("OFFPEAK_STORAGE_URL", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(OFFPEAK), "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base_url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"offpeak serve exited:\n{log.read_text()[-4000:]}")
        return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200

    wait_for(up, "offpeak serve", timeout=180)
    db = Database(f"sqlite:///{data_dir / 'offpeak.db'}")
    try:
        yield Stack(base_url, data_dir, db, log, process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        db.dispose()
