"""Two API replicas, two pools, two Prefect API servers behind one address, every role
on a host of its own: requests end exactly once, with and without faults.

The two-pool run uses real vLLM (the tiny model). The fault scenarios run their jobs on
the stand-in engine (standin/sitecustomize.py): what they test is the machinery around
the engine, and a vLLM start per job would not fit the test budget on two cores.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from offpeak.state.models import Job, Request
from tests.distributed.cluster import Cluster
from tests.distributed.scenario import Probe, run_scenario
from tests.distributed.verify import ENDED

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

OUTAGE = 20.0  # seconds a host stays cut off


def test_5000_requests_over_two_replicas_end_exactly_once_on_both_pools(cluster: Cluster) -> None:
    """In two waves: the singles and batches first; the file and the dataset once a job
    holds the first wave, so that the planner, with that pool busy and the work due within
    the hour, sends the second wave to the other pool. Sent at once, one tick can see all
    of it and open one job on one pool (seen in CI)."""
    cluster.use_engine("vllm")
    outcome = run_scenario(
        cluster,
        singles=3000,
        per_batch=100,
        file_lines=1000,
        dataset_rows=1000,
        timeout=900,
        between=lambda: _wait(lambda: _active_job(cluster) is not None),
    )
    assert outcome.submitted.total == 5000
    assert outcome.pools == {"inference/eu", "inference/us"}
    print(f"\n5000 requests, two pools, vLLM: {outcome.seconds:.0f} s")


# --- faults ---------------------------------------------------------------------------


def _wait(check: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the fault's moment never came"
        time.sleep(0.2)


def _active_job(cluster: Cluster) -> Job | None:
    """A job launched or running."""
    db = cluster.database()
    try:
        with db.session() as session:
            active = select(Job).where(Job.status.in_(("launched", "running")))
            return session.scalars(active).first()
    finally:
        db.dispose()


def _running_job(cluster: Cluster) -> Job | None:
    """A job some run holds that has recorded outcomes already (mid-job)."""
    db = cluster.database()
    try:
        with db.session() as session:
            return session.scalars(
                select(Job).where(Job.status == "running", Job.lease_owner.is_not(None))
            ).first()
    finally:
        db.dispose()


def _job_counts(cluster: Cluster, job_id: str) -> tuple[int, int]:
    """(ended, all) of the requests a job holds."""
    db = cluster.database()
    try:
        with db.session() as session:
            ended = func.count().filter(Request.status.in_(ENDED))
            row = session.execute(select(ended, func.count()).where(Request.job_id == job_id)).one()
            return int(row[0]), int(row[1])
    finally:
        db.dispose()


def _job_progress_after(cluster: Cluster, job_id: str, since: float, ended: int) -> float:
    """Seconds from ``since`` until the job's own requests end beyond ``ended``: the other
    pool keeps the pipeline going, this is how long the hit job's work stood still."""
    _wait(lambda: _job_counts(cluster, job_id)[0] > ended)
    return time.monotonic() - since


def _mid_job(cluster: Cluster, probe: Probe) -> Job:
    _wait(lambda: probe.running(50) and _running_job(cluster) is not None)
    job = _running_job(cluster)
    assert job is not None
    return job


def kill_api_replica(cluster: Cluster, probe: Probe, times: dict[str, float | None]) -> None:
    """kill -9 one API replica under load (clients fail over to the other)."""
    time.sleep(3)  # mid-submission
    cluster.host("api-a").kill()
    killed = time.monotonic()
    _wait(lambda: probe.running(1))
    times["progress"] = probe.progress_after(killed)
    cluster.restart("api-a")


def kill_worker(cluster: Cluster, probe: Probe, times: dict[str, float | None]) -> None:
    """kill -9 the worker host of a running job (its flow run dies with it); a
    supervisor starts the worker again 5 s later."""
    job = _mid_job(cluster, probe)
    host = f"worker-{job.deployment.rsplit('/', 1)[1]}"
    cluster.host(host).kill()
    killed = time.monotonic()
    ended, held = _job_counts(cluster, job.id)
    time.sleep(5)
    cluster.restart(host)
    _wait(lambda: probe.progress_after(killed) is not None)
    times["progress"] = probe.progress_after(killed)
    if ended < held:  # else the job had just finished: nothing of it to resume
        times["job_progress"] = _job_progress_after(cluster, job.id, killed, ended)


def restart_prefect_server(cluster: Cluster, probe: Probe, times: dict[str, float | None]) -> None:
    """kill -9 one of the two Prefect API servers mid-run and start it again."""
    _mid_job(cluster, probe)
    cluster.host("prefect-a").kill()
    killed = time.monotonic()
    cluster.restart("prefect-a")
    _wait(lambda: probe.progress_after(killed) is not None)
    times["progress"] = probe.progress_after(killed)


def _cut(host: str) -> object:
    def cut(cluster: Cluster, probe: Probe, times: dict[str, float | None]) -> None:
        _mid_job(cluster, probe)
        cluster.host(host).cut()
        time.sleep(OUTAGE)
        cluster.host(host).heal()
        healed = time.monotonic()
        _wait(lambda: probe.progress_after(healed) is not None)
        times["progress_after_heal"] = probe.progress_after(healed)

    cut.__doc__ = f"cut the {host} host off for {OUTAGE:.0f} s"
    return cut


def pause_worker(cluster: Cluster, probe: Probe, times: dict[str, float | None]) -> None:
    """SIGSTOP a running job's worker host for longer than the job's lease."""
    job = _mid_job(cluster, probe)
    host = cluster.host(f"worker-{job.deployment.rsplit('/', 1)[1]}")
    host.pause()
    paused = time.monotonic()
    ended, held = _job_counts(cluster, job.id)
    time.sleep(cluster.tuning.job_lease_seconds + 2 * cluster.tuning.scheduler_interval + 5)
    host.resume()
    resumed = time.monotonic()
    _wait(lambda: probe.progress_after(resumed) is not None)
    times["progress_after_resume"] = probe.progress_after(resumed)
    times["paused"] = resumed - paused
    if ended < held:
        times["job_progress"] = _job_progress_after(cluster, job.id, paused, ended)


FAULTS = {
    "kill-api-replica": kill_api_replica,
    "kill-worker": kill_worker,
    "restart-prefect-server": restart_prefect_server,
    "cut-s3": _cut("s3"),
    "cut-postgres": _cut("db"),
    "pause-worker": pause_worker,
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_requests_end_exactly_once_through_a_fault(cluster: Cluster, name: str) -> None:
    cluster.use_engine("standin")
    restarts = len(cluster.restarts)
    outcome = run_scenario(
        cluster,
        singles=3000,
        per_batch=100,
        file_lines=1000,
        dataset_rows=1000,
        fault=FAULTS[name],  # type: ignore[arg-type]
    )
    assert outcome.submitted.total == 5000
    times = ", ".join(f"{k} {v:.1f} s" for k, v in outcome.recovery.items() if v is not None)
    abandoned = outcome.submitted.abandoned
    restarted = ", ".join(f"{role} (exit {code})" for role, code in cluster.restarts[restarts:])
    print(f"\n{name}: {times}; keys abandoned {abandoned}; scenario {outcome.seconds:.0f} s; "
          f"restarted by the supervisor: {restarted or 'none'}")  # fmt: skip


def test_a_role_that_exits_on_its_own_is_started_again(cluster: Cluster) -> None:
    """The supervisor, as Kubernetes would: Prefect's worker exits on some 500s of its
    server (seen while PostgreSQL was cut off), and its pod comes back."""
    host = cluster.host("control")
    [worker] = host.processes
    restarts = len(cluster.restarts)
    worker.send_signal(signal.SIGKILL)  # not Host.kill: the process dies, the host does not
    deadline = time.monotonic() + 60
    while not (cluster.restarts[restarts:] and host.processes):
        assert time.monotonic() < deadline, "the control worker was not started again"
        time.sleep(0.5)
    assert cluster.restarts[restarts:] == [("control", -signal.SIGKILL)]
    [again] = host.processes
    assert again.pid != worker.pid and again.poll() is None
