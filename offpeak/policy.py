"""Launch policies: given the pending work, what to launch now.

A policy is a pure function; the scheduler flow calls the one named by
``OFFPEAK_SCHEDULER_POLICY``. The carbon-aware planner replaces `immediate` later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from offpeak.config import Settings
from offpeak.jobs import PendingGroup


@dataclass(frozen=True)
class Launch:
    """One job to start now: up to ``max_requests`` of a group, on a deployment."""

    group: PendingGroup
    max_requests: int
    deployment: str


LaunchPolicy = Callable[[Sequence[PendingGroup], Settings], list[Launch]]


def immediate(groups: Sequence[PendingGroup], settings: Settings) -> list[Launch]:
    """Run whatever is pending at once, in jobs of at most `job_max_requests`."""
    size = settings.job_max_requests
    return [
        Launch(group, size, settings.inference_deployment)
        for group in groups
        for _ in range(-(-group.count // size))
    ]


POLICIES: dict[str, LaunchPolicy] = {"immediate": immediate}
