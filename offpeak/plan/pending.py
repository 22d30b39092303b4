"""Pending work read from the state database: per engine, requests in units by deadline,
and the planner's view of them in GPU-seconds."""

from __future__ import annotations

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


def work_groups(groups: Sequence[PendingGroup], registry: ModelRegistry) -> list[WorkGroup]:
    """The planner's view of the pending groups: per unit, its deadline and GPU-seconds."""
    return [
        WorkGroup(
            g.engine_model,
            [
                Work(u.first_expires_at, work_gpu_seconds(u.tokens, registry.get(g.engine_model)))
                for u in g.units
            ],
        )
        for g in groups
    ]


def pending_groups(db: Database, registry: ModelRegistry) -> list[PendingGroup]:
    """Sealed, registered requests per engine model, in units by minute of deadline.
    Models no longer served are left out (their requests wait, and expire, rather than
    crash the scheduler). A request without a token estimate counts as a full context."""
    units: dict[str, dict[int, list[PendingUnit]]] = defaultdict(lambda: defaultdict(list))
    models: dict[str, set[str]] = defaultdict(set)
    for row in state.pending_work(db):
        if row.model not in registry:
            continue
        engine = registry.engine_model(row.model)
        context = registry.get(engine).context_length
        tokens = min(row.est_tokens + row.unestimated * context, row.count * context)
        models[engine].add(row.model)
        minute = row.first_expires_at - row.first_expires_at % 60
        units[engine][minute].append(
            PendingUnit(row.first_expires_at, row.last_expires_at, row.count, tokens)
        )
    return [
        PendingGroup(engine, tuple(sorted(models[engine])), tuple(_merged(units[engine])))
        for engine in sorted(units)
    ]


def _merged(by_minute: dict[int, list[PendingUnit]]) -> list[PendingUnit]:
    """One unit per minute (stand-ins of one engine share it), earliest first."""
    return [
        PendingUnit(
            min(u.first_expires_at for u in parts),
            max(u.last_expires_at for u in parts),
            sum(u.count for u in parts),
            sum(u.tokens for u in parts),
        )
        for _, parts in sorted(by_minute.items())
    ]
