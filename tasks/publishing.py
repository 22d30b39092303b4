"""Tasks that publish results."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from offpeak.openai_output import finalize_ready
from offpeak.publish import publish_ready
from tasks.retry import RETRIES, RETRY_DELAYS, transient
from tasks.runtime import runtime


@task(
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=transient,
)
def publish_ready_batches() -> list[str]:
    """Write the JSONL of every batch whose requests have all ended (and the output
    files of OpenAI batches)."""
    rt = runtime()
    published = [p.key for p in publish_ready(rt.db, rt.store)]
    finalize_ready(rt.db, rt.store)
    return published
