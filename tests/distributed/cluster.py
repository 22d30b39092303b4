"""The distributed stack: every role on a host of its own (tests/distributed/netns.py).

Started from the same code the product ships: `offpeak api`, `prefect server start
--no-services` twice plus `prefect server services start` (on PostgreSQL and Redis, as
Prefect's self-hosted scaling guide sets it up), one `prefect worker` per pool with
the inference deployment of that pool, and a worker of the scheduler's pool.

A supervisor restarts a role whose process exits on its own, as Kubernetes restarts a
pod: Prefect's worker exits when its server answers 500 at the wrong moment (as it does
while PostgreSQL is cut off; PrefectHQ/prefect#16977), and in production its pod comes
back. The scenarios' own kills are not restarted by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import yaml

from offpeak.state.db import Database, upgrade
from offpeak.storage import S3Store
from tests.distributed.netns import Host, Network
from tests.utils.services import _pg_bin, wait_for

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]
BUCKET = "offpeak-dist"
PREFECT_PORT, API_PORT, S3_PORT, PG_PORT, REDIS_PORT = 4200, 8000, 5000, 5432, 6379
POOLS = {"eu": "DE", "us": "US-CAL-CISO"}  # pool -> grid zone of the replayed traces


@dataclass(frozen=True)
class Tuning:
    """The stack's knobs the scenarios depend on."""

    scheduler_interval: int = 4
    job_max_requests: int = 5000
    chunk_size: int = 100
    job_lease_seconds: int = 15
    standin_seconds: float = 0.002  # the stand-in engine's time per request
    throughput_tokens_per_s: int = 150  # what the planner assumes of the tiny model here
    restart_delay: float = 5.0  # the supervisor's wait before it restarts an exited role


class Cluster:
    """Starts the hosts in order; :meth:`close` stops them and removes the network."""

    def __init__(self, root: Path, tuning: Tuning = Tuning()) -> None:
        self.root, self.tuning = root, tuning
        root.chmod(0o755)  # PostgreSQL runs as its own user below it
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.net = Network(self.logs)
        self.starters: dict[str, Callable[[], None]] = {}
        self.restarts: list[tuple[str, int | None]] = []  # (role, exit status) by the supervisor
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    # --- addresses ------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host('db').address}:{PG_PORT}/offpeak"

    @property
    def prefect_db_url(self) -> str:
        return f"postgresql+asyncpg://postgres@{self.host('db').address}:{PG_PORT}/prefect"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host('s3').address}:{S3_PORT}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.host('lb').address}:{PREFECT_PORT}/api"

    def api_url(self, replica: str) -> str:
        return f"http://{self.host(replica).address}:{API_PORT}"

    # --- environments ---------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        keep = (
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "PYTHONPATH",
            "OFFPEAK_TEST_NETS",
            "OFFPEAK_TEST_NETGUARD_LOG",
            "OFFPEAK_TEST_NETGUARD",
        )
        return {
            **{k: v for k, v in os.environ.items() if k in keep},
            "HOME": str(self.root),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_HOME": str(self.root / "prefect-home"),
        }

    def prefect_server_env(self) -> dict[str, str]:
        redis = self.host("redis").address
        return {
            **self.base_env(),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.prefect_db_url,
            # Prefect's guide to several servers: events, caches, ordering, leases and
            # the background services' queue in Redis, so every server sees them.
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_SERVER_DOCKET_URL": f"redis://{redis}:{REDIS_PORT}/1",
            "PREFECT_REDIS_MESSAGING_HOST": redis,
            "PREFECT_REDIS_MESSAGING_PORT": str(REDIS_PORT),
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            # A scheduler run that dies without a final state (its server unreachable, as
            # when the database is cut off) holds the deployment's one slot until its
            # lease runs out: 300 s by default, every tick cancelled meanwhile.
            "PREFECT_SERVER_CONCURRENCY_INITIAL_DEPLOYMENT_LEASE_DURATION": "30",
            "PREFECT_UI_ENABLED": "false",
        }

    def offpeak_env(self, name: str) -> dict[str, str]:
        t = self.tuning
        return {
            **self.base_env(),
            "PREFECT_API_URL": self.prefect_api,
            "OFFPEAK_DATA_DIR": str(self.root / "data" / name),
            "OFFPEAK_DATABASE_URL": self.database_url,
            "OFFPEAK_STORAGE_URL": f"s3://{BUCKET}/data",
            "OFFPEAK_S3_ENDPOINT_URL": self.s3_endpoint,
            "OFFPEAK_MODELS_DIR": str(self.root / "models"),
            "OFFPEAK_CACHE_DIR": str(self.root / "cache"),
            "OFFPEAK_POOLS_PATH": str(self.root / "pools.yaml"),
            "OFFPEAK_MODELS_PATH": str(self.root / "models.yaml"),
            "OFFPEAK_CARBON_PROVIDER": "replay",
            "OFFPEAK_SCHEDULER_POLICY": "carbon",
            "OFFPEAK_SCHEDULER_INTERVAL": str(t.scheduler_interval),
            "OFFPEAK_JOB_MAX_REQUESTS": str(t.job_max_requests),
            "OFFPEAK_CHUNK_SIZE": str(t.chunk_size),
            "OFFPEAK_JOB_LEASE_SECONDS": str(t.job_lease_seconds),
            "OFFPEAK_SEAL_INTERVAL": "0.5",
            "OFFPEAK_WEBHOOK_ALLOW_PRIVATE": "true",  # the tests' receiver is on the bridge
        }

    # --- roles ----------------------------------------------------------------------------

    def start(self) -> None:
        for name in (
            "db",
            "s3",
            "redis",
            "prefect-a",
            "prefect-b",
            "prefect-services",
            "lb",
            "api-a",
            "api-b",
            "control",
            "worker-eu",
            "worker-us",
        ):
            self.net.add(name)
        self._write_config()
        self._start_postgres()
        self._start("s3", self._s3)
        self._start("redis", self._redis)
        self._start("prefect-a", lambda: self._prefect_api("prefect-a", migrate=True))
        self._start("prefect-b", lambda: self._prefect_api("prefect-b", migrate=False))
        self._start("prefect-services", self._prefect_services)
        self._start("lb", self._balancer)
        self._deploy()
        for replica in ("api-a", "api-b"):
            self._start(replica, lambda r=replica: self._api(r))  # type: ignore[misc]
        self._start("control", lambda: self._worker("control", "control"))
        for pool in POOLS:
            self._start(f"worker-{pool}", lambda p=pool: self._worker(f"worker-{p}", p))  # type: ignore[misc]
        self._supervisor.start()

    def _start(self, name: str, starter: Callable[[], None]) -> None:
        self.starters[name] = starter
        starter()

    def restart(self, name: str) -> None:
        """Bring a stopped host back: its processes started again, as a supervisor would."""
        self.host(name).kill()
        self.starters[name]()

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for name in list(self.starters):
                if not (gone := self.host(name).exited()):
                    continue
                self.restarts.append((name, gone[0].returncode))
                print(f"supervisor: {name} exited with {gone[0].returncode}; restarting it",
                      file=sys.stderr)  # fmt: skip
                if self._stopping.wait(self.tuning.restart_delay):
                    return
                try:
                    self.restart(name)
                except Exception as exc:  # one that starts and exits again comes back again
                    print(f"supervisor: {name} did not start: {exc}", file=sys.stderr)

    def _write_config(self) -> None:
        t = self.tuning
        pools = {
            name: {
                "deployment": f"inference/{name}",
                "zone": zone,
                "gpus": 1,
                "watts_per_gpu": 65,
                "pue": 1.1,
                "max_concurrent_jobs": 1,
                "startup_seconds": 30,
            }
            for name, zone in POOLS.items()
        }
        (self.root / "pools.yaml").write_text(yaml.safe_dump({"pools": pools}))
        # The catalog as shipped, with the tiny model's throughput as measured on two
        # shared cores: the planner then needs both pools to meet short windows.
        catalog = yaml.safe_load((PROJECT / "offpeak/catalog/defaults/models.yaml").read_text())
        catalog["models"]["tiny-chat"]["throughput_tokens_per_s"] = t.throughput_tokens_per_s
        (self.root / "models.yaml").write_text(yaml.safe_dump(catalog))
        self.use_engine("vllm")
        interval = {"interval": self.tuning.scheduler_interval}
        deployments = [
            {
                "name": "scheduler",
                "entrypoint": "flows.scheduler:scheduler",
                "work_pool": {"name": "control", "work_queue_name": "default"},
                "concurrency_limit": {"limit": 1, "collision_strategy": "CANCEL_NEW"},
                "schedules": [interval],
            },
            *(
                {
                    "name": pool,
                    "entrypoint": "flows.inference:inference",
                    "work_pool": {"name": pool, "work_queue_name": "default"},
                }
                for pool in POOLS
            ),
        ]
        manifest = {"name": "offpeak-distributed", "pull": [], "deployments": deployments}
        (self.root / "prefect.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    def _start_postgres(self) -> None:
        host = self.host("db")
        data = self.root / "pg"
        data.mkdir()
        shutil.chown(data, "postgres")
        bindir = _pg_bin()
        as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"]
        subprocess.run(
            [*as_postgres, f"{bindir}/initdb -D {data}/data -U postgres --auth=trust -E UTF8"],
            check=True,
            capture_output=True,
        )
        with open(data / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.net.address.rsplit('.', 1)[0]}.0/24 trust\n")

        def start() -> None:
            command = (
                f"exec {bindir}/postgres -D {data}/data -p {PG_PORT} -k {data} "
                f"-c listen_addresses={host.address} -c fsync=off -c max_connections=400"
            )
            host.spawn([*as_postgres, command], self.base_env())

        self._start("db", start)
        url = f"postgresql://postgres@{host.address}:{PG_PORT}/postgres"
        wait_for(lambda: psycopg.connect(url, connect_timeout=2).close() is None, "PostgreSQL")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE offpeak")
            conn.execute("CREATE DATABASE prefect")
        upgrade(self.database_url)

    def _s3(self) -> None:
        host = self.host("s3")
        host.spawn(
            [str(BIN / "moto_server"), "-H", host.address, "-p", str(S3_PORT)], self.base_env()
        )
        wait_for(
            lambda: httpx.get(f"{self.s3_endpoint}/moto-api/", timeout=2).status_code < 500,
            "moto S3",
        )
        S3Store(
            f"s3://{BUCKET}/data", endpoint_url=self.s3_endpoint, region="us-east-1"
        ).ensure_bucket()

    def _redis(self) -> None:
        host = self.host("redis")
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        host.spawn(
            [
                redis,
                "--bind",
                host.address,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            self.base_env(),
        )

    def _prefect_api(self, name: str, *, migrate: bool) -> None:
        host = self.host(name)
        env = {
            **self.prefect_server_env(),
            "PREFECT_API_DATABASE_MIGRATE_ON_START": "true" if migrate else "false",
        }
        host.spawn(
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--no-services",
                "--no-ui",
                "--host",
                host.address,
                "--port",
                str(PREFECT_PORT),
            ],
            env,
        )
        url = f"http://{host.address}:{PREFECT_PORT}/api/health"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, name, timeout=180)

    def _prefect_services(self) -> None:
        env = {**self.prefect_server_env(), "PREFECT_API_DATABASE_MIGRATE_ON_START": "false"}
        self.host("prefect-services").spawn(
            [str(BIN / "prefect"), "server", "services", "start"], env
        )

    def _balancer(self) -> None:
        host = self.host("lb")
        backends = [f"{self.host(n).address}:{PREFECT_PORT}" for n in ("prefect-a", "prefect-b")]
        host.spawn(
            [
                sys.executable,
                "-m",
                "tests.distributed.balancer",
                f"{host.address}:{PREFECT_PORT}",
                *backends,
            ],
            {**self.base_env(), "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{PROJECT}"},
        )
        url = f"{self.prefect_api}/health"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, "the balancer")

    def _prefect_cli(self, *args: str) -> None:
        env = {**self.base_env(), "PREFECT_API_URL": self.prefect_api}
        subprocess.run(
            [str(BIN / "prefect"), *args],
            env=env,
            cwd=PROJECT,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def _deploy(self) -> None:
        for pool in ("control", *POOLS):
            self._prefect_cli("work-pool", "create", pool, "--type", "process", "--overwrite")
        self._prefect_cli(
            "--no-prompt", "deploy", "--all", "--prefect-file", str(self.root / "prefect.yaml")
        )

    def _api(self, name: str) -> None:
        host = self.host(name)
        host.spawn(
            [str(BIN / "offpeak"), "api", "--host", host.address, "--port", str(API_PORT)],
            self.offpeak_env(name),
        )
        url = f"{self.api_url(name)}/healthz"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, name, timeout=120)

    def _worker(self, name: str, pool: str) -> None:
        env = {
            **self.offpeak_env(name),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            # The stand-in engine's switch (standin/sitecustomize.py), read at each job.
            "PYTHONPATH": f"{PROJECT / 'tests' / 'distributed' / 'standin'}:{PROJECT}",
            # (that sitecustomize loads the network guard's, which it shadows)
            "OFFPEAK_TEST_ENGINE_SWITCH": str(self.engine_switch),
            "OFFPEAK_TEST_STANDIN_SECONDS": str(self.tuning.standin_seconds),
        }
        self.host(name).spawn(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"], env
        )

    @property
    def engine_switch(self) -> Path:
        return self.root / "engine"

    def use_engine(self, engine: str) -> None:
        """`vllm` (the product's engine) or `standin` for the jobs started from now."""
        self.engine_switch.write_text(engine)

    # --- handles for the tests ------------------------------------------------------------

    def database(self) -> Database:
        return Database(self.database_url)

    def store(self) -> S3Store:
        return S3Store(f"s3://{BUCKET}/data", endpoint_url=self.s3_endpoint, region="us-east-1")

    def close(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=180)
        self.net.close()
        shutil.rmtree(self.root / "pg", ignore_errors=True)
        shutil.rmtree(self.root / "data", ignore_errors=True)


def wait_until(check: Callable[[], object], what: str, timeout: float) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    wait_for(check, what, timeout=timeout)
    return time.monotonic() - started
