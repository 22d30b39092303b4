"""Expected start and completion times of waiting work, read off a tick's plan (pure).

The planner works on units: a group's requests (one engine, maybe several model names)
whose deadlines fall in one minute. Each planned job covers some units of a group, so a
unit's expected start is its earliest job's start and its expected completion its
latest job's end. The API finds a request's unit from its model and the minute of its
`expires_at`, which is how pending work is grouped (offpeak.state.jobs.pending_work).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the API reads `Expected` rows without loading the planner
    from offpeak.plan.pending import PendingGroup
    from offpeak.plan.planner import Plan
    from offpeak.plan.policy import Launch


@dataclass(frozen=True)
class Expected:
    """When the plan expects the requests of ``model`` due in one minute to run."""

    model: str
    expires_minute: int  # unix seconds of the minute, as `expires_at - expires_at % 60`
    start_at: int
    completion_at: int | None  # None: the plan has no run length (the `immediate` policy)


def minute_of(expires_at: int) -> int:
    return expires_at - expires_at % 60


def _merge(found: dict[tuple[str, int], Expected], new: Expected) -> None:
    key = (new.model, new.expires_minute)
    old = found.get(key)
    if old is None:
        found[key] = new
        return
    ends = [e for e in (old.completion_at, new.completion_at) if e is not None]
    found[key] = Expected(
        new.model,
        new.expires_minute,
        min(old.start_at, new.start_at),
        # Unknown for one part is unknown for the unit.
        max(ends) if len(ends) == 2 else None,
    )


def _stamp(at: datetime) -> int:
    return int(at.timestamp())


def expected_times(
    plan: Plan | None, groups: Sequence[PendingGroup], launches: Sequence[Launch], now: int
) -> list[Expected]:
    """Per model and minute of deadline, the expected times of the pending units. With no
    plan (the `immediate` policy) what launches now starts now, its end unknown."""
    by_engine = {g.engine_model: g for g in groups}
    found: dict[tuple[str, int], Expected] = {}
    if plan is not None:
        for job in plan.jobs:
            group = by_engine.get(job.group)
            if group is None:
                continue
            for index in job.units:
                minute = minute_of(group.units[index].first_expires_at)
                for model in group.models:
                    _merge(found, Expected(model, minute, _stamp(job.start), _stamp(job.end)))
    else:
        for launch in launches:
            for unit in launch.group.units:
                for model in launch.group.models:
                    minute = minute_of(unit.first_expires_at)
                    _merge(found, Expected(model, minute, now, None))
    return sorted(found.values(), key=lambda e: (e.model, e.expires_minute))
