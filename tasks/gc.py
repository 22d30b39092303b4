"""Tasks of the gc flow."""

from __future__ import annotations

from offpeak.clock import now
from offpeak.retention import collect
from tasks.retry import retried_task
from tasks.runtime import runtime


@retried_task
def collect_expired() -> dict[str, int]:
    """Delete every object past its retention and mark its rows (safe to run again)."""
    rt = runtime()
    done = collect(rt.db, rt.store, rt.settings.results_retention, now())
    return {
        "batches": len(done.batches),
        "files": len(done.files),
        "requests": done.requests,
        "objects": len(done.objects),
    }
