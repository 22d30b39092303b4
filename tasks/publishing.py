"""Tasks that publish results."""

from __future__ import annotations

from offpeak.publish.exxa_jsonl import publish_ready
from offpeak.publish.openai_files import finalize_ready
from tasks.retry import retried_task
from tasks.runtime import runtime


@retried_task
def publish_ready_batches() -> list[str]:
    """Write the JSONL of every batch whose requests have all ended, each on its own (one
    that cannot be published is marked failed), and the output files of OpenAI batches."""
    rt = runtime()
    published = [p.key for p in publish_ready(rt.db, rt.store)]
    finalize_ready(rt.db, rt.store)
    return published
