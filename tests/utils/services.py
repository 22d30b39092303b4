"""Real services for the test run: a moto S3 server over HTTP, a PostgreSQL cluster.

Each starts once per test session. When one cannot start the tests fail with the
reason: nothing is skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s (last error: {last})")


@contextmanager
def moto_server(port: int | None = None) -> Iterator[str]:
    """A moto S3 server in its own process, speaking HTTP on loopback (on ``port``, to
    bring one back where an earlier one was stopped)."""
    port = port or free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{endpoint}/moto-api/").status_code < 500, "moto S3 server")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


class RestartableMoto:
    """A moto S3 server of one test's own, that it can stop (an outage) and start again
    on the same port, empty as a restarted moto is."""

    def __init__(self) -> None:
        self.port = free_port()
        self._stack = ExitStack()
        self.endpoint = self.start()

    def start(self) -> str:
        return self._stack.enter_context(moto_server(self.port))

    def stop(self) -> None:
        self._stack.close()


def _pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    found = candidates[-1] if candidates else shutil.which("pg_ctl")
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: `make test` installs it (apt-get install postgresql), "
            "or set OFFPEAK_TEST_POSTGRES_URL to a server"
        )
    return Path(found).resolve().parent


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback; yields a SQLAlchemy URL prefix."""
    bindir = _pg_bin()
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="offpeak-pg-"))
    data = root / "data"
    as_root = os.geteuid() == 0

    def run(args: list[str]) -> None:
        command = [str(a) for a in args]
        if as_root:  # initdb and postgres refuse to run as root
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    if as_root:
        shutil.chown(root, "postgres")
    run([bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    run([bindir / "pg_ctl", "-D", data, "-o", f"'{options}'", "-w", "-l", root / "log", "start"])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


class PrefectServer:
    """A Prefect server started in the background for the whole test run."""

    def __init__(self, home: Path, database_url: str) -> None:
        """``database_url``: the SQLAlchemy URL of an empty PostgreSQL database."""
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url.replace(
                "postgresql+psycopg://", "postgresql+asyncpg://"
            ),
        }
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                 "127.0.0.1", "--port", str(self.port), "--no-ui"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self, timeout: float = 180) -> str:
        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect server exited:\n{self.log.read_text()[-3000:]}")
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200

        wait_for(healthy, "the Prefect server", timeout=timeout)
        return self.api_url

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def require_module(name: str, why: str) -> None:
    """Fail the test (never skip it) when an installed-by-default module is missing."""
    import importlib

    import pytest

    try:
        importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{name} is missing ({exc}): {why}; `make install` installs it", pytrace=False)
