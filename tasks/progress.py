"""The task that keeps the expected times of waiting work from the tick's plan."""

from __future__ import annotations

from offpeak.clock import now
from offpeak.plan.expected import expected_times
from offpeak.plan.gather import Planned
from offpeak.state import expectations
from tasks.retry import retried_task
from tasks.runtime import runtime


@retried_task
def record_expected_times(planned: Planned) -> int:
    """Store when the tick's plan expects each waiting unit of work to start and end."""
    at = now()
    rows = expected_times(planned.plan, planned.groups, planned.launches, at)
    return expectations.record(runtime().db, rows, at)
