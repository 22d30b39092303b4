"""Session-wide real services and the fixtures built on them."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from offpeak.config import Settings, load_settings
from offpeak.state.db import Database
from offpeak.storage import LocalStore, ObjectStore, S3Store
from tests.utils.services import PrefectServer, moto_server, postgres_server

# The network guard (tests/netguard/sitecustomize.py) in this process and, through
# PYTHONPATH, in every Python process the tests start: no DNS query and no connection
# leaves loopback; a refused connection is logged and fails the run at its end.
NETGUARD = Path(__file__).parent / "netguard"
NETGUARD_LOG = Path(tempfile.mkdtemp(prefix="offpeak-netguard-")) / "refused.log"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(NETGUARD), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ["OFFPEAK_TEST_NETGUARD_LOG"] = str(NETGUARD_LOG)
_guard = importlib.util.spec_from_file_location("netguard", NETGUARD / "sitecustomize.py")
assert _guard and _guard.loader
_guard.loader.exec_module(importlib.util.module_from_spec(_guard))

# `make test` (CI) runs the property tests on examples derived from each test, so a run
# can be repeated exactly (`--hypothesis-profile=ci`); `make test-fast` and `make fuzz`
# draw new ones, which is where new counterexamples come from (keep them as @example).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)

_prefect: PrefectServer | None = None
_services = ExitStack()  # what the session started outside fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the services it needs, from the fixtures it uses, so that
    `make test-fast` (`-m "not postgres and not s3 and not live and not e2e and not
    vllm"`) runs exactly the tests that need none."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        needs = set()
        if "postgres_root" in names or params.get("database_url") == "postgres":
            needs.add("postgres")
        if "s3_endpoint" in names or params.get("store") == "s3":
            needs.add("s3")
        stack = params.get("live_api") or params.get("stack")
        if "live_api" in names or stack:  # both stacks read `s3://` datasets from S3
            needs |= {"s3"} | ({"live"} if "live_api" in names else set())
            needs |= {"postgres"} if stack == "postgres-s3" else set()
        if "prefect_api" in names:  # the Prefect server runs on PostgreSQL
            needs |= {"e2e", "postgres", "slow"}
        if names & {"engine", "embed_engine", "tiny_model"}:
            needs |= {"vllm", "slow"}
        for name in sorted(needs):
            item.add_marker(name)


# `make test-fast` sets this: a test that needs a service without being marked for it
# fails instead of quietly starting the service.
NO_SERVICES = os.environ.get("OFFPEAK_TEST_NO_SERVICES") == "1"


def _service(name: str) -> None:
    if NO_SERVICES:
        pytest.fail(f"this test needs {name} but is not marked for it", pytrace=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    # The Prefect server takes ~20 s to start: start it as soon as we know a test
    # needs it, so it warms up while the other tests run.
    global _prefect
    needed = any("prefect_api" in getattr(item, "fixturenames", ()) for item in session.items)
    if needed and not NO_SERVICES and not os.environ.get("OFFPEAK_TEST_PREFECT_API_URL"):
        # On its own PostgreSQL: on SQLite, Prefect 3.7's server under the e2e load can
        # hold its database locked for minutes and stall every flow run.
        database = _services.enter_context(postgres_server())
        _prefect = PrefectServer(PREFECT_HOME, new_postgres_database(database))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _prefect is not None:
        _prefect.stop()
    _services.close()
    if NETGUARD_LOG.exists() and (refused := NETGUARD_LOG.read_text()):
        print(f"\nThe network guard refused connections off loopback:\n{refused}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """A real Prefect server's API URL, also set as PREFECT_API_URL for this process."""
    _service("the Prefect server")
    url = os.environ.get("OFFPEAK_TEST_PREFECT_API_URL") or (_prefect and _prefect.wait())
    assert url, "the Prefect server was not started"
    os.environ["PREFECT_API_URL"] = url
    return url


# The test run's own Prefect home: nothing of the developer's profile leaks in.
PREFECT_HOME = Path(tempfile.mkdtemp(prefix="offpeak-prefect-"))
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server over HTTP (moto), or OFFPEAK_TEST_S3_ENDPOINT."""
    _service("the S3 server")
    if given := os.environ.get("OFFPEAK_TEST_S3_ENDPOINT"):
        yield given
        return
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def postgres_root() -> Iterator[str]:
    """A PostgreSQL server URL without a database, or OFFPEAK_TEST_POSTGRES_URL."""
    _service("PostgreSQL")
    if given := os.environ.get("OFFPEAK_TEST_POSTGRES_URL"):
        yield given.rstrip("/")
        return
    with postgres_server() as url:
        yield url


def new_postgres_database(root: str) -> str:
    """A fresh, empty database on the test server; returns its SQLAlchemy URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = root.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{root}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh state database URL, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_root"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.migrated(database_url)
    yield database
    database.dispose()


def new_s3_url() -> str:
    return f"s3://offpeak-{uuid.uuid4().hex[:10]}/data"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty object store, on each backend in turn."""
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    s3 = S3Store(new_s3_url(), endpoint_url=endpoint, region="us-east-1")
    s3.ensure_bucket()
    return s3


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-default settings inside a temporary data folder."""
    return load_settings(data_dir=tmp_path / "data")
