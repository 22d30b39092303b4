"""One scenario: the mix submitted over both replicas, a fault injected while it runs,
every request waited for, the outcome checked exactly; and how long progress stopped."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import select

from offpeak.heartbeats import last_beat
from offpeak.state.keys import create_key
from offpeak.state.models import Job, Request
from tests.distributed.cluster import Cluster
from tests.distributed.verify import ENDED, check_exactly_once, wait_all_ended
from tests.distributed.workload import CREDITS, Hooks, Submitted, submit_mix


@dataclass
class Probe:
    """Polls the state database for the scenario's ended requests, on a connection of
    its own with short timeouts, so an outage only leaves gaps in its record."""

    url: str
    key_ids: list[str]
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, ended)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with psycopg.connect(self.url, connect_timeout=1,
                                     options="-c statement_timeout=2000") as conn:  # fmt: skip
                    count = conn.execute(
                        "SELECT count(*) FROM requests WHERE key_id = ANY(%s) AND status = ANY(%s)",
                        (self.key_ids, list(ENDED)),
                    ).fetchone()
                self.samples.append((time.monotonic(), int(count[0]) if count else 0))
            except psycopg.Error:
                pass

    def running(self, at_least: int = 1) -> bool:
        return bool(self.samples) and self.samples[-1][1] >= at_least

    def progress_after(self, since: float) -> float | None:
        """Seconds from ``since`` to the first sample that ended more than the last one
        before it: how long the pipeline made no progress."""
        before = [n for t, n in self.samples if t <= since]
        base = before[-1] if before else 0
        for t, n in self.samples:
            if t > since and n > base:
                return t - since
        return None


@dataclass
class Outcome:
    submitted: Submitted
    pools: set[str]
    recovery: dict[str, float | None]
    seconds: float


Fault = Callable[[Cluster, Probe, dict[str, float | None]], None]


def run_scenario(
    cluster: Cluster, *, singles: int, per_batch: int, file_lines: int, dataset_rows: int,
    fault: Fault | None = None, timeout: float = 600,
    between: Callable[[], None] | None = None,
) -> Outcome:  # fmt: skip
    started = time.monotonic()
    db = cluster.database()
    store = cluster.store()
    keys = [create_key(db, f"dist-{i}", CREDITS) for i in range(3)]
    probe = Probe(cluster.database_url.replace("+psycopg", ""), [k.id for k, _ in keys])
    hooks = Hooks(cluster.net.address)
    urls = [cluster.api_url("api-a"), cluster.api_url("api-b")]
    recovery: dict[str, float | None] = {}
    with db.session() as session:
        earlier_jobs = frozenset(session.scalars(select(Job.id)))
    probe.start()
    # Submit once the scheduler ticks: its first tick then sees part of the mix, and the
    # rest, due within the hour while that pool is busy, goes to the other pool. Had the
    # control host's worker started late, one tick would see everything and send it to
    # one pool (seen in CI).
    ticking = time.time()
    deadline = time.monotonic() + 120
    while (last_beat(store, "scheduler") or 0.0) <= ticking:
        assert time.monotonic() < deadline, "the scheduler never ticked"
        time.sleep(0.25)
    print(f"\n  scheduler ticked after {time.monotonic() - started:.0f} s")
    injector = None
    if fault:
        injector = threading.Thread(target=fault, args=(cluster, probe, recovery), daemon=True)
        injector.start()
    try:
        submitted = submit_mix(urls, [secret for _, secret in keys], hooks, singles=singles,
                               per_batch=per_batch, file_lines=file_lines,
                               dataset_rows=dataset_rows, between=between)  # fmt: skip
        if fault:
            recovery["acks"] = _ack_gap(submitted)
        print(f"  {submitted.total} acknowledged after {time.monotonic() - started:.0f} s")
        wait_all_ended(db, submitted, timeout)
        print(f"  all ended after {time.monotonic() - started:.0f} s")
        if injector:
            injector.join(120)
            assert not injector.is_alive(), "the fault never completed"
        check_exactly_once(db, store, urls, submitted, hooks, earlier_jobs)
        print(f"  checked after {time.monotonic() - started:.0f} s")
        with db.session() as session:
            jobs = select(Request.job_id).where(Request.key_id.in_([k.id for k, _ in keys]))
            pools = set(session.scalars(select(Job.deployment).where(Job.id.in_(jobs))))
    finally:
        probe.stop()
        hooks.close()
        db.dispose()
    return Outcome(submitted, pools, recovery, time.monotonic() - started)


def _ack_gap(submitted: Submitted) -> float:
    """The longest wait between two acknowledgements while submitting."""
    times = sorted(submitted.acked_at)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
