"""Where divisible work should run: the cheapest hours for a stream of small units,
with the pools' capacity, before they are cut into jobs (see `offpeak.plan.planner`).

A group of many units (requests by minute of deadline) is divisible: its units may
run in any hour and in any number of jobs. Treated as one job of the earliest
deadline, the work all lands in the cleanest hour before the *oldest* deadline, and
younger units give up the clean hours of their own, longer windows. Here every unit
gets a slot instead, as in the fluid relaxation:

1. *Cells*: (pool, slot) for every hour the forecast covers, each with its cost per
   GPU-second (energy times intensity) and the GPU-seconds its free places can run in
   that clock hour (start-ups taken off).
2. *Greedy by cost*: cells, cleanest first, take as much work as they can while every
   deadline can still be met. All units are ready now, so their windows are nested
   (``[now, deadline)``) and the work a cell may take is bounded by a running minimum
   over the deadlines before it; on this polymatroid the greedy order is optimal.
3. *Units to cells*, earliest deadline first into the earliest cells (valid whenever
   the amounts are: Hall's condition on nested windows).
4. *Jobs*: a cell's units of one group become ``k`` jobs side by side, split by
   deadline range, ``k`` chosen on the forecast: more jobs run the work in the clean
   hour, fewer pay fewer start-ups (a single job may spill into the next hours).
   Cells whose work is too small to pay its own start-up join the job of a
   neighbouring cell when that is cheaper.

Units the cells cannot hold (no forecast, no room, a deadline within the hour) are
left to the planner's default cut.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from offpeak.plan.placement import window_integral

if TYPE_CHECKING:
    from offpeak.plan.planner import PlannerParams, Pool, WorkGroup

HOUR = 3600.0
_EPS = 1e-9


@dataclass
class TargetJob:
    """A job cut from the cells: units of one group, the cell it is meant for, and how
    many jobs of the same cell run side by side."""

    group: int
    units: tuple[int, ...]
    work: float
    deadline: float  # hours from the current hour (the earliest unit's)
    pool: int
    slot: int
    parallel: int


def divisible_jobs(
    groups: Sequence[WorkGroup],
    pools: Sequence[Pool],
    forecasts: Mapping[str, Sequence[float] | np.ndarray],
    busy: Mapping[str, Sequence[int]],
    params: PlannerParams,
    now_s: float,
    hour0: float,
) -> tuple[list[TargetJob], set[tuple[int, int]]]:
    """Jobs for the units of multi-unit groups that the cells hold, and the (group,
    unit) pairs they cover; every other unit is the caller's to cut."""
    off = (now_s - hour0) / HOUR
    refs = [(gi, u) for gi, g in enumerate(groups) if len(g.units) > 1 for u in range(len(g.units))]
    if not refs:
        return [], set()
    work = np.array([groups[g].units[u].gpu_seconds for g, u in refs], dtype=np.float64)
    due = np.array(
        [(groups[g].units[u].expires_at - params.safety_margin_s - hour0) / HOUR for g, u in refs]
    )
    cells = _Cells(pools, forecasts, busy, off)
    if cells.slots == 0:
        return [], set()
    # A unit may use the slots whose clock hour ends by its deadline; one whose latest
    # safe start is within the forecast margin only the current one.
    ends = np.floor(due + _EPS).astype(np.int64)
    latest = due - (cells.startup.min() + work / cells.gpus.max()) / HOUR
    ends = np.where(latest - off < params.forecast_margin_s / HOUR, np.minimum(ends, 1), ends)
    ends = np.clip(ends, 0, cells.slots)
    cells.leave(min(float(work.max()), HOUR / 4))
    cells.fill(work, ends)

    order = np.lexsort((np.arange(len(refs)), due))
    order = order[ends[order] > 0]  # due within this clock hour: the default cut's
    cell_of = _assign(work[order], cells.amount)
    # Units are whole: one whose middle lands past its own last slot (a cell's amount
    # being a fraction of a unit) is left to the default cut.
    cell_of = np.where(cell_of % cells.slots < ends[order], cell_of, -1)
    kept: dict[int, dict[tuple[int, int], list[int]]] = {}
    for k, i in enumerate(order.tolist()):
        if cell_of[k] < 0:
            continue
        p, s = divmod(int(cell_of[k]), cells.slots)
        kept.setdefault(refs[i][0], {}).setdefault((s, p), []).append(i)

    jobs: list[TargetJob] = []
    # Each group's arrivals per hour, as its latest hour of deadlines shows them.
    of_group = np.array([g for g, _ in refs])
    latest_due = np.full(len(groups), -np.inf)
    np.maximum.at(latest_due, of_group, due)
    recent = due > latest_due[of_group] - 1.0
    fresh = np.bincount(of_group[recent], work[recent], minlength=len(groups))
    for gi in sorted(kept):
        runs = sorted((s, p, idx) for (s, p), idx in kept[gi].items())
        runs = _waiting(runs, work, ends, cells, params, float(fresh[gi]))
        runs = _merged(runs, work, due, cells, params)
        for s, p, idx in runs:
            units = [refs[i][1] for i in idx]
            largest = min(params.max_job_gpu_s, groups[gi].max_job_gpu_s)
            jobs += _split(gi, p, s, idx, units, work, due, cells, largest)
    covered = {refs[i] for cells_of in kept.values() for idx in cells_of.values() for i in idx}
    return jobs, covered


class _Cells:
    """Cost per GPU-second and room in GPU-seconds of every (pool, slot)."""

    def __init__(
        self,
        pools: Sequence[Pool],
        forecasts: Mapping[str, Sequence[float] | np.ndarray],
        busy: Mapping[str, Sequence[int]],
        off: float,
    ) -> None:
        self.off = off
        self.gpus = np.array([p.gpus for p in pools], dtype=np.float64)
        self.startup = np.array([p.startup_seconds for p in pools], dtype=np.float64)
        self.kwh = np.array([p.kwh(1.0) for p in pools])
        self.series = [np.asarray(forecasts.get(p.zone, ()), dtype=np.float64) for p in pools]
        self.slots = slots = max((len(s) for s in self.series), default=0)
        self.cost = np.full((len(pools), slots), np.inf)
        for p, series in enumerate(self.series):
            self.cost[p, : len(series)] = series * self.kwh[p]
        self.cost[~np.isfinite(self.cost)] = np.inf
        used = np.zeros((len(pools), slots))
        for p, pool in enumerate(pools):
            row = np.asarray(busy.get(pool.name, ()), dtype=np.float64)[:slots]
            used[p, : len(row)] = row
        limit = np.array([p.max_concurrent_jobs for p in pools], dtype=np.float64)
        self.places = np.maximum(limit[:, None] - used, 0.0)
        length = np.full(slots, HOUR)
        length[:1] = (1.0 - off) * HOUR
        # The work one job can run in a slot's clock hour, after its start-up.
        self.per_job = np.maximum(length[None, :] - self.startup[:, None], 0.0) * self.gpus[:, None]
        self.room = self.places * self.per_job
        self.amount = np.zeros_like(self.cost)  # GPU-seconds per cell, once filled

    def leave(self, unit: float) -> None:
        """Keep a unit's worth free in each job's hour: units are whole, and a cell's
        share of them may pass its amount by that much (a job spilling into the next
        hour would hold two)."""
        self.room = self.places * np.maximum(self.per_job - unit, 0.0)

    def fill(self, work: np.ndarray, ends: np.ndarray) -> None:
        """GPU-seconds per cell (``amount``): cleanest cells first, each taking what the
        deadlines allow. Cells at slots >= T can only take the work of units due after T."""
        slots = self.slots
        after = np.array([work[ends > t].sum() for t in range(slots + 1)])
        taken_from = np.zeros(slots + 1)  # work already in slots >= t
        amount = self.amount = np.zeros_like(self.cost)
        flat = np.argsort(self.cost, axis=None, kind="stable")
        for k in flat.tolist():
            p, s = divmod(k, slots)
            if not np.isfinite(self.cost[p, s]) or self.room[p, s] <= 0:
                continue
            slack = after[: s + 1] - taken_from[: s + 1]
            x = min(self.room[p, s], float(slack.min()))
            if x <= _EPS:
                continue
            amount[p, s] = x
            taken_from[: s + 1] += x


def _assign(work: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """The cell of each unit (deadline order) where its work's middle lands, filling
    cells slot by slot (cleanest pool first within a slot); -1 past the cells."""
    npools, slots = amount.shape
    order = [(s, p) for s in range(slots) for p in range(npools) if amount[p, s] > _EPS]
    if not order:
        return np.full(len(work), -1)
    edges = np.cumsum([amount[p, s] for s, p in order])
    middle = np.cumsum(work) - work / 2
    at = np.searchsorted(edges, middle - _EPS)
    ids = np.array([p * slots + s for s, p in order] + [-1])
    return ids[np.minimum(at, len(order))]


def _waiting(
    runs: list[tuple[int, int, list[int]]],
    work: np.ndarray,
    ends: np.ndarray,
    cells: _Cells,
    params: PlannerParams,
    fresh: float,
) -> list[tuple[int, int, list[int]]]:
    """Work planned for now waits instead for a later hour, the cleanest of those that
    cost it less than its own start-up: the stream goes on, and what arrives meanwhile
    shares that start (the same rule as joining a planned job). Small work always may;
    an hour's job only when the stream's ``fresh`` arrivals per hour are no small work
    themselves (which would wait for company anyway, and save no start-up)."""
    if not runs or runs[0][0] != 0:
        return runs
    _, p0, idx = runs[0]
    w = float(work[idx].sum())
    last = int(ends[idx].min())
    small = w < params.min_job_gpu_s
    if last < 2 or not (small or (w <= cells.per_job[p0, 0] and fresh >= params.min_job_gpu_s)):
        return runs
    c0 = cells.cost[p0, 0]
    later = cells.cost[:, 1:last]
    ok = w * (later - c0) < cells.startup[p0] * cells.gpus[p0] * c0
    if not small:  # and only into room the fill left free, beside another job: on a
        # pool of one place, the hour is the fill's to share out
        free = cells.room[:, 1:last] - cells.amount[:, 1:last]
        ok &= (free >= w) & (cells.places[:, 1:last] > 1)
    if not ok.any():
        return runs
    k = int(np.argmin(np.where(ok, later, np.inf)))
    p, s = divmod(k, later.shape[1])
    rest = runs[1:]
    at = next((i for i, (s1, p1, _) in enumerate(rest) if (s1, p1) == (s + 1, p)), None)
    if at is not None:
        rest[at] = (s + 1, p, sorted(idx + rest[at][2], key=lambda i: ends[i]))
        return rest
    return sorted([*rest, (s + 1, p, idx)])


def _merged(
    runs: list[tuple[int, int, list[int]]],
    work: np.ndarray,
    due: np.ndarray,
    cells: _Cells,
    params: PlannerParams,
) -> list[tuple[int, int, list[int]]]:
    """Neighbouring cells of a group as one job where the start-up saved outweighs the
    cleaner hour given up: a later cell's units join the earlier job, or the earlier
    cell's units wait for the later one when they all still can."""
    out: list[tuple[int, int, list[int]]] = []
    for s, p, idx in runs:
        if out:
            s0, p0, idx0 = out[-1]
            w, w0 = float(work[idx].sum()), float(work[idx0].sum())
            c, c0 = cells.cost[p, s], cells.cost[p0, s0]
            up = cells.startup[p] * cells.gpus[p] * c  # the later cell's start-up
            up0 = cells.startup[p0] * cells.gpus[p0] * c0
            small = min(w, w0) < params.min_job_gpu_s
            fits0 = w + w0 <= cells.per_job[p0, s0] * max(cells.places[p0, s0], 1)
            if small and fits0 and w * (c0 - c) < up:
                out[-1] = (s0, p0, idx0 + idx)
                continue
            fits = w + w0 <= cells.per_job[p, s] * max(cells.places[p, s], 1)
            if small and fits and due[idx0].min() >= s + 1 and w0 * (c - c0) < up0:
                out[-1] = (s, p, idx0 + idx)
                continue
        out.append((s, p, list(idx)))
    return out


def _split(
    gi: int,
    p: int,
    s: int,
    idx: list[int],
    unit_ids: list[int],
    work: np.ndarray,
    due: np.ndarray,
    cells: _Cells,
    largest: float,
) -> list[TargetJob]:
    """A cell's units as ``k`` jobs side by side, by deadline range: the ``k`` (up to
    the free places, at least what ``largest`` work per job needs) with the least
    expected emissions, start-ups included."""
    w = work[idx]
    total = float(w.sum())
    gpus, startup = cells.gpus[p], cells.startup[p]
    most = max(1, min(int(cells.places[p, s]), len(idx)))
    least = max(1, math.ceil(total / largest))
    begin = cells.off if s == 0 else float(s)
    share = np.cumsum(w) - w / 2
    best = least
    # Within the slot's clock hour every run has that hour's intensity: more jobs would
    # only add start-ups. Past it, more jobs side by side may stay in the clean hour;
    # each must still end by its own earliest deadline (or it would run now instead).
    if begin + (startup + total / least / gpus) / HOUR > s + 1 + _EPS and most > least:
        ks = np.arange(least, most + 1)
        hours = (startup + total / ks / gpus) / HOUR
        mean = window_integral(cells.series[p], np.full(len(ks), begin), hours) / hours
        cost = np.where(np.isfinite(mean), (total + ks * startup * gpus) * mean, np.inf)
        # The fewest jobs among the (nearly) cheapest: each one more is a start-up more.
        # Then, if one of those would end late, the next cheapest.
        if np.isfinite(cost.min()):
            best = int(ks[np.flatnonzero(cost <= cost.min() * (1 + 1e-9))[0]])
            if not _on_time(share, w, due[idx], total, best, begin, startup, gpus):
                for k in np.lexsort((ks, cost)).tolist():
                    if not np.isfinite(cost[k]):
                        break
                    if _on_time(share, w, due[idx], total, int(ks[k]), begin, startup, gpus):
                        best = int(ks[k])
                        break
    # Contiguous deadline ranges of about equal work.
    chunks: list[list[int]] = [list(range(len(idx)))]
    if best > 1:
        chunks = [[] for _ in range(best)]
        for n, k in enumerate(_parts(share, total, best).tolist()):
            chunks[k].append(n)
        chunks = [c for c in chunks if c]
    return [
        TargetJob(
            gi,
            tuple(unit_ids[n] for n in c),
            float(w[c].sum()),
            float(due[[idx[n] for n in c]].min()),
            p,
            s,
            len(chunks),
        )
        for c in chunks
    ]


def _on_time(
    share: np.ndarray,
    w: np.ndarray,
    due: np.ndarray,
    total: float,
    k: int,
    begin: float,
    startup: float,
    gpus: float,
) -> bool:
    """Whether ``k`` jobs side by side from ``begin``, by deadline range, each end by
    the earliest deadline of their units."""
    # Each range holds at most its share and one unit more: no deadline that near.
    if begin + (startup + (total / k + float(w.max())) / gpus) / HOUR <= float(due.min()):
        return True
    starts = np.flatnonzero(np.diff(_parts(share, total, k), prepend=-1))  # contiguous
    ends = begin + (startup + np.add.reduceat(w, starts) / gpus) / HOUR
    return bool(np.all(ends <= np.minimum.reduceat(due, starts) + _EPS))


def _parts(share: np.ndarray, total: float, k: int) -> np.ndarray:
    """Which of ``k`` contiguous ranges of about equal work each unit falls in."""
    if total <= 0:
        return np.zeros(len(share), dtype=np.int64)
    return np.minimum((share / total * k).astype(np.int64), k - 1)
