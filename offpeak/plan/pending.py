"""Pending work read from the state database: per engine, requests in units by deadline,
and the planner's view of them in GPU-seconds."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from offpeak.catalog.models import ModelRegistry
from offpeak.plan.planner import Work, WorkGroup, work_gpu_seconds
from offpeak.state import jobs as state
from offpeak.state.db import Database


@dataclass(frozen=True)
class PendingUnit:
    """Pending requests of one model whose deadlines fall in the same minute."""

    first_expires_at: int  # the earliest expires_at among them (unix seconds)
    last_expires_at: int
    count: int
    tokens: int  # estimated (`estimate_tokens`), capped per request by the context


@dataclass(frozen=True)
class PendingGroup:
    """Requests waiting for the same engine (a model and its stand-ins), in units by
    deadline, earliest first."""

    engine_model: str
    models: tuple[str, ...]
    units: tuple[PendingUnit, ...]

    @property
    def count(self) -> int:
        return sum(u.count for u in self.units)


def work_groups(
    groups: Sequence[PendingGroup], registry: ModelRegistry, job_max_requests: int | None = None
) -> list[WorkGroup]:
    """The planner's view of the pending groups: per unit, its deadline and GPU-seconds;
    with ``job_max_requests``, the work of that many of the group's requests (at their
    mean size) as the most one job takes."""
    out = []
    for g in groups:
        spec = registry.get(g.engine_model)
        units = [Work(u.first_expires_at, work_gpu_seconds(u.tokens, spec)) for u in g.units]
        largest = math.inf
        if job_max_requests is not None and g.count:
            largest = sum(u.gpu_seconds for u in units) / g.count * job_max_requests
        out.append(WorkGroup(g.engine_model, units, largest))
    return out


def pending_groups(db: Database, registry: ModelRegistry) -> list[PendingGroup]:
    """Sealed, registered requests per engine model, in units by minute of deadline.
    Models no longer served are left out (their requests wait, and expire, rather than
    crash the scheduler). A request without a token estimate counts as a full context."""
    engines: dict[str, tuple[str, int] | None] = {}  # model -> (engine, its context)
    # engine -> minute -> [first_expires_at, last_expires_at, count, tokens]
    units: dict[str, dict[int, list[int]]] = defaultdict(dict)
    models: dict[str, set[str]] = defaultdict(set)
    for row in state.pending_work(db):
        if row.model not in engines:
            engines[row.model] = _engine_of(registry, row.model)
        served = engines[row.model]
        if served is None:
            continue
        engine, context = served
        tokens = min(row.est_tokens + row.unestimated * context, row.count * context)
        models[engine].add(row.model)
        minute = row.first_expires_at - row.first_expires_at % 60
        # Stand-ins of one engine share the minute's unit.
        unit = units[engine].get(minute)
        if unit is None:
            units[engine][minute] = [row.first_expires_at, row.last_expires_at, row.count, tokens]
        else:
            unit[0] = min(unit[0], row.first_expires_at)
            unit[1] = max(unit[1], row.last_expires_at)
            unit[2] += row.count
            unit[3] += tokens
    return [
        PendingGroup(
            engine,
            tuple(sorted(models[engine])),
            tuple(PendingUnit(*unit) for _, unit in sorted(units[engine].items())),
        )
        for engine in sorted(units)
    ]


def _engine_of(registry: ModelRegistry, model: str) -> tuple[str, int] | None:
    """The engine model serving ``model`` and its context length; None if not served."""
    if model not in registry:
        return None
    engine = registry.engine_model(model)
    return engine, registry.get(engine).context_length
