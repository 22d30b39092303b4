"""A run's lease on its job: taken at start, renewed by a heartbeat while it runs.

The lease is what makes a job run by one run at a time. A run that is killed, paused
or cut off stops renewing; once its lease expires the scheduler launches the job again
(offpeak.plan.recovery) and the new run takes it over. The old run, should it come
back, finds its lease gone at its next heartbeat or chunk and stops: what it may still
write is harmless (chunk files are create-if-absent, outcomes apply once), and it
runs no further chunk.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError

from offpeak.errors import JobLeaseLost
from offpeak.ids import new_id
from offpeak.state import jobs as state
from offpeak.state.db import Database

log = logging.getLogger(__name__)


class JobLease:
    """Holds ``job_id`` for this run; :meth:`check` raises once it is lost."""

    def __init__(self, db: Database, job_id: str, seconds: int) -> None:
        self.db, self.job_id, self.seconds = db, job_id, seconds
        self.owner = new_id()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="offpeak-job-lease", daemon=True)

    def take(self, runner: str) -> None:
        """Take the job, or raise JobLeaseLost when another run holds it."""
        at = int(time.time())
        if not state.claim_job(self.db, self.job_id, self.owner, at, self.seconds, runner):
            raise JobLeaseLost(f"job {self.job_id} is held by another run")
        self._thread.start()

    def check(self) -> None:
        """Raise JobLeaseLost if another run took the job over (asked of the database:
        a run that was paused learns it before it starts one more chunk)."""
        if self._lost.is_set() or not state.holds_lease(self.db, self.job_id, self.owner):
            self._lost.set()
            raise JobLeaseLost(f"job {self.job_id} was taken over by another run")

    def complete(self) -> None:
        """Mark the job completed, if it is still ours."""
        self._stop.set()
        if not state.complete_job(self.db, self.job_id, self.owner):
            raise JobLeaseLost(f"job {self.job_id} was taken over by another run")

    def release(self) -> None:
        """Stop the heartbeat; a run ending short gives the job back at once."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            state.release_lease(self.db, self.job_id, self.owner)
        except SQLAlchemyError as exc:  # it expires by itself
            log.warning("job %s: lease not released: %s", self.job_id, exc)

    def _beat(self) -> None:
        # A third of the lease: two beats may fail (a database blip) before it expires.
        while not self._stop.wait(self.seconds / 3):
            try:
                held = state.renew_lease(
                    self.db, self.job_id, self.owner, int(time.time()) + self.seconds
                )
            except SQLAlchemyError as exc:  # out of reach: try again at the next beat
                log.warning("job %s: lease not renewed: %s", self.job_id, exc)
                continue
            if not held:
                log.warning("job %s: lease lost to another run; this run stops", self.job_id)
                self._lost.set()
                return
