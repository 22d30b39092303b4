"""`offpeak serve`: the whole stack on one machine, stopped together by Ctrl-C.

A Prefect server on 127.0.0.1 (unless PREFECT_API_URL names one), a process work
pool per pool named in prefect.yaml, the deployments of prefect.yaml (the scheduler on
an interval of OFFPEAK_SCHEDULER_INTERVAL seconds), a worker per pool, and the API.

The scheduler, publish and gc flows run on a pool of their own (`control`), as in
production, and its worker (so every control flow run it starts) only on CPU time the
engines leave (SCHED_IDLE on Linux): on one machine they share the CPU, and a tick that
waits costs nothing, an engine that waits costs throughput.

A worker that exits is started again, as Kubernetes restarts a worker's pod: Prefect's
worker exits when its server answers 500 at the wrong moment (PrefectHQ/prefect#16977;
on SQLite, "database is locked" does it). Any other process that exits, or a worker that
exits within a minute of starting, stops the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType

import httpx
import yaml

from offpeak.config import Settings, get_settings
from offpeak.logs import setup_logging
from offpeak.state.db import upgrade

PROJECT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT / "prefect.yaml"
BIN = Path(sys.executable).parent
SCHEDULER = "scheduler/scheduler"
CONTROL_POOL = "control"
# Seconds between a worker's polls for flow runs, unless PREFECT_WORKER_QUERY_SECONDS says
# otherwise. Each poll writes to the Prefect server's database: polls every second made
# a vLLM engine on the same two cores 23% slower than alone, every 5 s 7% (and on SQLite
# they are most of its "database is locked" retries). A run waits 2.5 s more on average.
WORKER_POLL_SECONDS = "5"
# A worker that exits sooner than this after starting is not started again: it cannot run.
RESTART_AFTER_SECONDS = 60.0

log = logging.getLogger("offpeak.serve")


def work_pools(prefect_yaml: Path = PREFECT_YAML) -> list[str]:
    """The work pools prefect.yaml's deployments run on."""
    config = yaml.safe_load(prefect_yaml.read_text())
    return sorted({d["work_pool"]["name"] for d in config["deployments"]})


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {process.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {api_url} was not healthy within {timeout:.0f}s")


def set_scheduler_interval(seconds: float) -> None:
    """Replace the scheduler deployment's schedules with one active interval."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import SCHEDULE_TYPES, IntervalSchedule

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(SCHEDULER)
        for existing in client.read_deployment_schedules(deployment.id):
            client.delete_deployment_schedule(deployment.id, existing.id)
        interval: SCHEDULE_TYPES = IntervalSchedule(interval=timedelta(seconds=seconds))
        client.create_deployment_schedules(deployment.id, [(interval, True)])


def _idle_priority() -> None:
    """In the child before it starts: run only on CPU time nothing else wants (Linux), or
    at the lowest priority."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


class Stack:
    """The processes of one `offpeak serve`, started in order and stopped in reverse."""

    def __init__(self, settings: Settings, *, api_port: int, prefect_port: int) -> None:
        self.settings = settings
        self.api_port = api_port
        self.prefect_port = prefect_port
        self.env = dict(os.environ)
        # By name, in start order (a process started again keeps its place, for stop()).
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.prefect_log: Path | None = None
        # The workers' starts, to start them again; when each process started.
        self._restart: dict[str, Callable[[], subprocess.Popen[bytes]]] = {}
        self._started: dict[str, float] = {}
        # Process groups of workers started again: their flow runs live on, until stop().
        self._orphans: list[int] = []

    def _spawn(
        self, name: str, args: list[str], log: Path | None = None, idle: bool = False, **env: str
    ) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else None  # noqa: SIM115 - the child owns it
        # Each in its own process group: stopping it stops what it started (flow runs).
        process = subprocess.Popen(
            args,
            env={**self.env, **env},
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_idle_priority if idle else None,
        )
        if out:
            out.close()
        if (before := self.processes.get(name)) is not None:
            self._orphans.append(before.pid)
        self.processes[name] = process
        self._started[name] = time.monotonic()
        return process

    def _run(self, args: list[str]) -> None:
        subprocess.run(args, env=self.env, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        upgrade(self.settings.database_url)  # before anything opens the database
        if not self.env.get("PREFECT_API_URL"):
            home = self.settings.data_dir.resolve() / "prefect"
            home.mkdir(parents=True, exist_ok=True)
            self.env.update(
                PREFECT_HOME=str(home),
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_API_URL=f"http://127.0.0.1:{self.prefect_port}/api",
                # Plan the scheduler's runs within seconds of deploying, not a minute.
                PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
            )
            # Its log goes to a file: on SQLite its background services report
            # harmless "database is locked" retries that would drown the terminal.
            self.prefect_log = home / "server.log"
            server = self._spawn(
                "prefect server",
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.prefect_port)],
                log=self.prefect_log,
            )  # fmt: skip
            wait_healthy(self.env["PREFECT_API_URL"], server)
        os.environ["PREFECT_API_URL"] = self.env["PREFECT_API_URL"]
        for pool in work_pools():
            self._run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process",
                       "--overwrite"])  # fmt: skip
        self._run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all",
                   "--prefect-file", str(PREFECT_YAML)])  # fmt: skip
        set_scheduler_interval(self.settings.scheduler_interval)
        for pool in work_pools():
            name = f"worker {pool}"
            self._restart[name] = functools.partial(
                self._spawn,
                name,
                [str(BIN / "prefect"), "worker", "start", "--pool", pool],
                idle=pool == CONTROL_POOL,
                PREFECT_WORKER_QUERY_SECONDS=self.env.get(
                    "PREFECT_WORKER_QUERY_SECONDS", WORKER_POLL_SECONDS
                ),
                PREFECT_WORKER_PREFETCH_SECONDS="5",
            )
            self._restart[name]()
        # The API runs the scheduler when a batch is submitted: its work starts in seconds.
        nudge = self.env.get("OFFPEAK_SCHEDULER_DEPLOYMENT", SCHEDULER)
        self._spawn(
            "api",
            [str(BIN / "offpeak"), "api", "--port", str(self.api_port)],
            OFFPEAK_SCHEDULER_DEPLOYMENT=nudge,
        )

    def stop(self) -> None:
        for name, process in reversed(self.processes.items()):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                if name.startswith("worker"):
                    # A worker ignores the first interrupt; the second one stops it.
                    time.sleep(0.2)
                    process.send_signal(signal.SIGINT)
        for name, process in reversed(self.processes.items()):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop; killing it", name)
                process.kill()
                process.wait()
        # Flow runs a worker started live in its group: they go with it.
        for group in [process.pid for process in self.processes.values()] + self._orphans:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)

    def watch(self) -> int:
        """Wait until a process other than a worker exits or we are told to stop; the exit
        status."""
        stopping = False

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        while not stopping:
            for name, process in list(self.processes.items()):
                if process.poll() is None:
                    continue
                ran = time.monotonic() - self._started[name]
                if name in self._restart and ran >= RESTART_AFTER_SECONDS:
                    log.warning("%s exited with %s; starting it again", name, process.returncode)
                    self._restart[name]()
                    continue
                log.error("%s exited with %s; stopping the stack", name, process.returncode)
                return 1
            time.sleep(0.5)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offpeak serve", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="API port [OFFPEAK_API_PORT]")
    parser.add_argument("--prefect-port", type=int, default=4200, help="Prefect server port")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_format)
    stack = Stack(
        settings,
        api_port=settings.api_port if args.port is None else args.port,
        prefect_port=args.prefect_port,
    )
    try:
        stack.start()
        log.info(
            "offpeak is up: API http://%s:%s/v1, Prefect UI %s",
            settings.api_host,
            stack.api_port,
            stack.env["PREFECT_API_URL"].removesuffix("/api"),
        )
        if stack.prefect_log:
            log.info("Prefect server log: %s", stack.prefect_log)
        return stack.watch()
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
