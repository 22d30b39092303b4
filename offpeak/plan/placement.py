"""The planner's passes over one tick (see `offpeak.plan.planner` for the method):
jobs cut from the groups, the pools' capacity per hour, reservation, improvement and
the late ones, on numpy arrays. Internal to the planner; `planner.plan` runs them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from offpeak.plan.planner import PlannerParams, Pool, WorkGroup
    from offpeak.plan.targets import TargetJob

HOUR = 3600.0
_EPS = 1e-9
# The second improvement sweep gains a little (~0.3 % on the benchmark's crowded year)
# at ~30 us a job: skipped when capacity turned away more jobs than this.
_SECOND_SWEEP_MAX = 2000
# Reservation retries (least-laxity order; late joins split) only when EDF left at most
# this many late: more mean overload, where the retries only cost time.
RETRY_MAX_LATE = 32


def window_integral(series: np.ndarray, start: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Integral of an hourly step series over ``[start, start + hours)`` (in hours from
    the series' first hour, fractional allowed, broadcast); NaN past its end."""
    cum = np.concatenate(([0.0], np.cumsum(np.asarray(series, dtype=np.float64))))
    knots = np.arange(len(cum), dtype=np.float64)
    begin = np.interp(start, knots, cum, right=np.nan)
    end = np.interp(np.asarray(start) + hours, knots, cum, right=np.nan)
    return np.asarray(end - begin)


@dataclass
class Jobs:
    group: list[int]
    units: list[tuple[int, ...]]
    work: np.ndarray  # GPU-seconds
    deadline: np.ndarray  # hours from the current hour
    # Divisible work's cell (pool, slot) from `offpeak.plan.targets`, or None, and how
    # many jobs of that cell run side by side.
    target: list[tuple[int, int] | None] = field(default_factory=list)
    parallel: list[int] = field(default_factory=list)


def cut_jobs(
    groups: Sequence[WorkGroup],
    pools: Sequence[Pool],
    params: PlannerParams,
    now_s: float,
    hour0: float,
    targeted: Sequence[TargetJob] = (),
    covered: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset(),
) -> Jobs:
    """Jobs from each group: the ``targeted`` ones as they are, then the units not
    ``covered`` by them in deadline order, cut by size and by what the earliest
    deadline of a job still allows on the fastest pool."""
    fastest_gpus = max(p.gpus for p in pools)
    fastest_start = min(p.startup_seconds for p in pools)
    group: list[int] = []
    units: list[tuple[int, ...]] = []
    work: list[float] = []
    deadline: list[float] = []
    target: list[tuple[int, int] | None] = []
    parallel: list[int] = []
    for t in targeted:
        group.append(t.group)
        units.append(t.units)
        work.append(t.work)
        deadline.append(t.deadline * HOUR + hour0)
        target.append((t.pool, t.slot))
        parallel.append(t.parallel)
    for gi, g in enumerate(groups):
        items = g.units
        left = [i for i in range(len(items)) if (gi, i) not in covered]
        if not left:
            continue
        if len(left) == 1:
            i = left[0]
            group.append(gi)
            units.append((i,))
            work.append(items[i].gpu_seconds)
            deadline.append(items[i].expires_at - params.safety_margin_s)
            continue
        order = sorted(left, key=lambda i: items[i].expires_at)
        largest = min(params.max_job_gpu_s, g.max_job_gpu_s)
        chunk: list[int] = []
        size = due = 0.0
        for i in order:
            w = items[i].gpu_seconds
            if chunk and (
                size + w > largest or now_s + fastest_start + (size + w) / fastest_gpus > due
            ):
                group.append(gi)
                units.append(tuple(chunk))
                work.append(size)
                deadline.append(due)
                chunk, size = [], 0.0
            if not chunk:
                due = items[i].expires_at - params.safety_margin_s
            chunk.append(i)
            size += w
        if chunk:
            group.append(gi)
            units.append(tuple(chunk))
            work.append(size)
            deadline.append(due)
    target += [None] * (len(group) - len(target))
    parallel += [1] * (len(group) - len(parallel))
    return Jobs(
        group,
        units,
        np.asarray(work, dtype=np.float64),
        (np.asarray(deadline, dtype=np.float64) - hour0) / HOUR,
        target,
        parallel,
    )


def separate(
    jobs: Jobs,
    which: Sequence[int],
    groups: Sequence[WorkGroup],
    params: PlannerParams,
    hour0: float,
) -> Jobs:
    """``jobs`` with each of ``which`` cut into one job per unit (default cut, no
    target cell)."""
    split = set(which)
    keep = [j for j in range(len(jobs.work)) if j not in split]
    parts = [(jobs.group[j], u) for j in which for u in jobs.units[j]]
    units = [groups[g].units[u] for g, u in parts]
    return Jobs(
        [jobs.group[j] for j in keep] + [g for g, _ in parts],
        [jobs.units[j] for j in keep] + [(u,) for _, u in parts],
        np.concatenate([jobs.work[keep], [w.gpu_seconds for w in units]]),
        np.concatenate(
            [
                jobs.deadline[keep],
                [(w.expires_at - params.safety_margin_s - hour0) / HOUR for w in units],
            ]
        ),
        [jobs.target[j] for j in keep] + [None] * len(parts),
        [jobs.parallel[j] for j in keep] + [1] * len(parts),
    )


class Capacity:
    """Jobs per pool per hour against the pools' limits; hour 0 is the current hour.

    Plain lists for the one-window checks of the common case; a cumulative count of
    full hours for the vectorized search when the first choice has no room."""

    def __init__(self, pools: Sequence[Pool], busy: Mapping[str, Sequence[int]], hours: int):
        self.limit = [p.max_concurrent_jobs for p in pools]
        committed = [[int(n) for n in busy.get(p.name, ())] for p in pools]
        hours = max(hours, *(len(c) for c in committed))
        self.used = [c + [0] * (hours - len(c)) for c in committed]
        self.hours = hours
        # Running count of full hours per pool (past the tracked hours counts as full,
        # which spares the search a clip), kept up to date as places are taken.
        full = np.ones((len(pools), 2 * hours + 1), dtype=np.int64)
        full[:, :hours] = np.array(self.used) >= np.array(self.limit)[:, None]
        self._cum = np.zeros((len(pools), full.shape[1] + 1), dtype=np.int64)
        np.cumsum(full, axis=1, out=self._cum[:, 1:])
        self._row = np.arange(len(pools)) * self._cum.shape[1]
        self._grid = np.arange(hours + 1)

    def fits(self, p: int, first: int, last: int) -> bool:
        row = self.used[p]
        if last > len(row):
            row.extend([0] * (last - len(row)))
        return max(row[first:last]) < self.limit[p]

    def add(self, p: int, first: int, last: int, n: int) -> None:
        row, limit = self.used[p], self.limit[p]
        for h in range(first, last):
            was = row[h] >= limit
            row[h] += n
            if h < self.hours and (row[h] >= limit) != was:
                self._cum[p, h + 1 :] += -1 if was else 1

    def blocked(self, spans: np.ndarray, slots: int) -> np.ndarray:
        """Whether a job holding ``spans[p]`` hours would meet a full hour in each
        (pool, slot < slots); ``slots`` must not pass the tracked hours."""
        last = self._grid[:slots] + (spans + self._row)[:, None]
        return self._cum.ravel()[last] > self._cum[:, :slots]


class Placement:
    """The arrays of one planning tick and the passes over them."""

    def __init__(
        self,
        jobs: Jobs,
        pools: Sequence[Pool],
        forecasts: Mapping[str, Sequence[float] | np.ndarray],
        params: PlannerParams,
        busy: Mapping[str, Sequence[int]],
        off: float,
    ) -> None:
        self.jobs, self.off = jobs, off
        n, npools = len(jobs.work), len(pools)
        gpus = np.array([p.gpus for p in pools], dtype=np.float64)
        startup = np.array([p.startup_seconds for p in pools], dtype=np.float64)
        kwh_per_gpu_s = np.array([p.kwh(1.0) for p in pools])
        self.dur = (startup[None, :] + jobs.work[:, None] / gpus[None, :]) / HOUR  # hours
        self.energy = (jobs.work[:, None] + (startup * gpus)[None, :]) * kwh_per_gpu_s[None, :]
        # Clock hours a job holds in a pool, from the hour of its start.
        self.span = np.maximum(np.ceil(off + self.dur - _EPS), 1).astype(np.int64)
        self.by_speed = np.argsort(self.dur, axis=1, kind="stable")
        latest = jobs.deadline[:, None] - self.dur  # latest start, hours from the hour
        # The last slot a job may wait for, per pool: 0 = now only, -1 = not in time here.
        last_slot = np.where(latest >= off - _EPS, np.floor(latest - off + _EPS), -1)
        # Work whose latest safe start is within the forecast-error margin runs now.
        self.forced = latest.max(axis=1) - off < params.forecast_margin_s / HOUR
        last_slot = np.where(self.forced[:, None], np.minimum(last_slot, 0), last_slot)
        self.last_slot = last_slot.astype(np.int64)

        # Expected gCO2e of every (job, pool, slot) that the forecasts cover.
        horizon = max((len(forecasts.get(p.zone, ())) for p in pools), default=0)
        self.slots = slots = max(1, min(int(self.last_slot.max()) + 1, horizon))
        self.begin = off + np.arange(slots, dtype=np.float64)
        self.cost = np.full((n, npools, slots), np.nan)
        for pi, pool in enumerate(pools):
            series = np.asarray(forecasts.get(pool.zone, ()), dtype=np.float64)
            if len(series):
                integral = window_integral(series, self.begin[None, :], self.dur[:, pi, None])
                mean = integral / np.maximum(self.dur[:, pi, None], _EPS)
                self.cost[:, pi, :] = self.energy[:, pi, None] * mean

        slot = np.arange(slots)[None, None, :]
        self.small = jobs.work < params.min_job_gpu_s
        # Every job may take any slot of its window, so the cleanest one is never dirtier
        # than running now (slot 0) unless capacity or a deadline says otherwise.
        allowed = slot <= self.last_slot[:, :, None]
        # Ties (flat or repeating forecasts) go to the earliest slot, whatever the rounding,
        # except for small work: there the latest of equally clean slots gives later
        # arrivals longest to join the job (and share its start-up) at no carbon cost.
        tie = np.where(self.small[:, None, None], -1e-9, 1e-9) * slot
        score = self.cost * (np.where(slot > 0, 1.0 + params.min_saving, 1.0) + tie)
        score = np.where(allowed & ~np.isnan(score), score, np.inf)
        self.score = score.reshape(n, npools * slots)
        self.first_choice = self.score.argmin(axis=1)

        hours = math.ceil(max(jobs.deadline.max(), off + self.dur.max())) + 2
        self.cap = Capacity(pools, busy, hours)
        self.order = np.lexsort((np.arange(n), jobs.deadline)).tolist()  # earliest deadline first
        self.placed: dict[int, tuple[int, int]] = {}
        self.reason: dict[int, str] = {}
        # Python copies for the per-job loops, where numpy's per-call cost dominates.
        self.dur_l: list[list[float]] = self.dur.tolist()
        self.span_l: list[list[int]] = self.span.tolist()
        self.by_speed_l: list[list[int]] = self.by_speed.tolist()
        self.deadline_l: list[float] = jobs.deadline.tolist()
        self.first_l: list[tuple[int, int]] = [divmod(k, slots) for k in self.first_choice.tolist()]
        self.seen_l: list[bool] = np.isfinite(self.score.min(axis=1)).tolist()
        # Divisible work aims at its cell of the joint fill (`offpeak.plan.targets`),
        # which weighs every unit's window and the room of each hour together.
        for j, aim in enumerate(jobs.target):
            if aim is None or aim[1] >= slots:
                continue
            if np.isfinite(self.score[j, aim[0] * slots + aim[1]]):
                self.first_l[j] = aim

    def start_of(self, s: int) -> float:
        return self.off + s

    def _last(self, j: int, p: int, s: int) -> int:
        return s + self.span_l[j][p]

    def _fits(self, j: int, p: int, s: int) -> bool:
        return self.cap.fits(p, s, self._last(j, p, s))

    def _take(self, j: int, p: int, s: int, n: int = 1) -> None:
        self.cap.add(p, s, self._last(j, p, s), n)

    def _blocked(self, j: int, slots: int) -> np.ndarray:
        return self.cap.blocked(self.span[j], slots)

    def reserve(self) -> list[int]:
        """Every job takes its earliest finish, earliest deadline first; returns the
        jobs that cannot be on time. EDF is not exact once a pool runs several jobs
        (or there are several pools): when it leaves a few jobs late, least-laxity
        order (latest start first) is tried too, and the order with fewer late jobs
        kept. Many late jobs mean overload, where EDF does better anyway."""
        late = self._reserve_in(self.order)
        if 0 < len(late) <= RETRY_MAX_LATE:
            edf = dict(self.placed)
            self._release()
            laxity = self.jobs.deadline - self.dur.min(axis=1)
            late_lst = self._reserve_in(np.lexsort((np.arange(len(laxity)), laxity)).tolist())
            if len(late_lst) < len(late):
                return late_lst
            self._release()
            for j, (p, s) in edf.items():
                self.placed[j] = p, s
                self._take(j, p, s)
        return late

    def _release(self) -> None:
        for j, (p, s) in self.placed.items():
            self._take(j, p, s, -1)
        self.placed.clear()

    def _reserve_in(self, order: list[int]) -> list[int]:
        late = []
        used, limit = self.cap.used, self.cap.limit
        room = [0] * len(limit)  # per pool, the first hour with room: only grows here
        for j in order:
            if not self._reserve_now(j, room):
                best = self._earliest(j, room)
                if best is None:
                    late.append(j)
                    continue
                self.placed[j] = best
                self._take(j, *best)
            p = self.placed[j][0]
            row = used[p]
            while room[p] < len(row) and row[room[p]] >= limit[p]:
                room[p] += 1
        return late

    def _earliest(self, j: int, room: list[int]) -> tuple[int, int] | None:
        dur, due = self.dur_l[j], self.deadline_l[j] + _EPS
        best, soonest = None, math.inf
        for p in self.by_speed_l[j]:
            s = room[p]
            while True:
                finish = self.start_of(s) + dur[p]
                if finish > due or finish >= soonest:
                    break
                if self._fits(j, p, s):
                    best, soonest = (p, s), finish
                    break
                s += 1
        return best

    def _reserve_now(self, j: int, room: list[int]) -> bool:
        """The common case: room now in a pool that no later slot could beat."""
        used, limit = self.cap.used, self.cap.limit
        dur, span = self.dur_l[j], self.span_l[j]
        due = self.deadline_l[j] + _EPS
        bound = self.off + 1.0 + min(dur)  # the soonest any later slot can finish
        for p in self.by_speed_l[j]:
            finish = self.off + dur[p]
            if finish > bound or finish > due:
                return False
            if room[p] == 0 and max(used[p][0 : span[p]]) < limit[p]:
                self.placed[j] = p, 0
                self.cap.add(p, 0, span[p], 1)
                return True
        return False

    def improve(self, late: set[int]) -> None:
        """Move each job, biggest first, to the cleanest room it may take, the others'
        places held; then once more for those that capacity kept from their first choice
        (their rivals may have moved since), unless there are too many of them."""
        # The biggest jobs choose first: they have the most at stake (ties: deadline).
        rank = np.empty(len(self.order), dtype=np.int64)
        rank[self.order] = np.arange(len(self.order))
        todo = [j for j in np.lexsort((rank, -self.jobs.work)).tolist() if j not in late]
        for _sweep in range(2):
            crowded = []
            for j in todo:
                p0, s0 = self.placed[j]
                self._take(j, p0, s0, -1)
                choice, why = self._cleanest(j)
                if choice is None:
                    choice = p0, s0
                    why = "capacity" if self.seen_l[j] else "no signal"
                elif self.forced[j]:
                    why = "deadline"
                if self.seen_l[j] and choice != self.first_l[j]:
                    crowded.append(j)
                self.placed[j] = choice
                self.reason[j] = why
                self._take(j, *choice)
            todo = crowded
            if not todo or len(todo) > _SECOND_SWEEP_MAX:
                break

    def _cleanest(self, j: int) -> tuple[tuple[int, int] | None, str]:
        if self.seen_l[j]:
            choice: tuple[int, int] | None = self.first_l[j]
            if not self._fits(j, *self.first_l[j]):
                row = np.where(self._blocked(j, self.slots).ravel(), np.inf, self.score[j])
                k = int(row.argmin())
                choice = divmod(k, self.slots) if np.isfinite(row[k]) else None
            if choice is not None:
                # Small work planned later waits there for company as well as for the grid.
                waits = self.small[j] and choice[1] > 0
                return choice, "aggregating" if waits else "cleanest"
        if self.small[j] and not self.forced[j]:  # no forecast that far: wait, still
            for p, s in enumerate(self.last_slot[j].tolist()):
                if s > 0 and self._fits(j, p, s):
                    return (p, s), "aggregating"
        return None, ""

    def place_late(self, late: list[int]) -> None:
        """After everyone else: the earliest finish with room, deadline or not."""
        hours = self.cap.hours
        start = self.off + np.arange(hours)
        closed = np.array(self.cap.limit)[:, None] <= 0
        for j in late:
            finish = start[None, :] + self.dur[j][:, None]
            finish[self._blocked(j, hours) | closed] = np.inf
            k = int(finish.argmin())
            best = divmod(k, hours) if np.isfinite(finish.flat[k]) else self._beyond(j, hours)
            self.placed[j] = best
            self.reason[j] = "late"
            self._take(j, *best)

    def _beyond(self, j: int, hours: int) -> tuple[int, int]:
        """Past the tracked hours, where the pools are free again."""
        p = next(p for p in self.by_speed_l[j] if self.cap.limit[p] > 0)
        s = hours
        while not self._fits(j, p, s):
            s += 1
        return p, s
