"""Runs the scheduler at once when a batch is submitted, not at its next scheduled tick.

A route calls the nudge and returns; a thread of its own asks Prefect for one run of
the scheduler deployment (``OFFPEAK_SCHEDULER_DEPLOYMENT``), at most one every
``min_interval`` seconds: the nudges of a burst of submissions make one or two runs.
A run that finds a tick under way is cancelled (the deployment runs one at a time), and
that tick may have read the pending work before the batch was committed: the nudge
then asks again, until a run starts (three tries). The nudge only hastens what the
scheduled ticks do anyway, so when Prefect cannot be reached the failure is logged and
the work waits for the next tick.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

MIN_INTERVAL = 5.0  # seconds between two runs the nudges ask for
TRIES = 3  # runs asked for while the ones before were cancelled
START_TIMEOUT = 30.0  # seconds to wait for a run to start (or be cancelled)


class SchedulerNudge:
    """Calling it never blocks and never raises; without a deployment it does nothing."""

    def __init__(
        self, deployment: str | None, min_interval: float = MIN_INTERVAL, tries: int = TRIES
    ) -> None:
        self.deployment, self.min_interval, self.tries = deployment, min_interval, tries
        self.runs = 0  # times it went to Prefect (each asks for one run, or a few)
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._deployment_id: Any = None

    def start(self) -> None:
        if self.deployment and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler-nudge", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __call__(self) -> None:
        self._wanted.set()

    def _loop(self) -> None:
        while self._wanted.wait() and not self._stopping.is_set():
            self._wanted.clear()
            try:
                self._run_scheduler()
                self.runs += 1
            except Exception as exc:  # Prefect down or the deployment missing: the tick comes
                log.warning("scheduler run not requested: %s: %s", type(exc).__name__, exc)
            self._stopping.wait(self.min_interval)  # nudges meanwhile make one run after it

    def _run_scheduler(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType

        waiting = {StateType.SCHEDULED, StateType.PENDING}
        with get_client(sync_client=True) as client:
            if self._deployment_id is None:
                self._deployment_id = client.read_deployment_by_name(self.deployment or "").id
            for _ in range(self.tries):
                run = client.create_flow_run_from_deployment(self._deployment_id, tags=["nudge"])
                deadline = time.monotonic() + START_TIMEOUT
                state = run.state_type
                while state in waiting and time.monotonic() < deadline:
                    if self._stopping.wait(0.5):
                        return
                    state = client.read_flow_run(run.id).state_type
                if state not in (StateType.CANCELLED, StateType.CANCELLING):
                    return  # started (or still waiting for a worker: the tick comes too)
