"""The API's nudge of the scheduler: one Prefect run per burst, never an error of its own."""

from __future__ import annotations

import logging
import threading

import pytest

from api_adapter.nudge import SchedulerNudge
from tests.utils.services import free_port, wait_for


class CountingNudge(SchedulerNudge):
    """Counts the runs it would ask Prefect for (the real call is the e2e test's)."""

    def __init__(self, min_interval: float) -> None:
        super().__init__("scheduler/scheduler", min_interval)
        self.calls = 0
        self.release = threading.Event()

    def _run_scheduler(self) -> None:
        self.calls += 1
        self.release.wait(5)


def test_a_burst_of_nudges_asks_for_two_runs_at_most() -> None:
    nudge = CountingNudge(min_interval=0.2)
    nudge.start()
    try:
        nudge()
        wait_for(lambda: nudge.calls == 1, "the first run", timeout=5)
        for _ in range(50):  # while the first is under way: one more run after it
            nudge()
        nudge.release.set()
        wait_for(lambda: nudge.runs == 2, "the second run", timeout=5)
    finally:
        nudge.stop()
    assert nudge.calls == 2


def test_without_a_deployment_nothing_runs() -> None:
    nudge = SchedulerNudge(None)
    nudge.start()
    nudge()
    nudge.stop()
    assert nudge.runs == 0


def test_an_unreachable_prefect_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    closed = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="api_adapter.nudge")
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        nudge = SchedulerNudge("scheduler/scheduler", min_interval=0.1)
        nudge.start()
        try:
            nudge()
            wait_for(
                lambda: "scheduler run not requested" in caplog.text, "the warning", timeout=60
            )
        finally:
            nudge.stop()
    assert nudge.runs == 0
