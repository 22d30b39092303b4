"""The publish flow: JSONL for every finished batch."""

from __future__ import annotations

from prefect import flow

from tasks.publishing import publish_ready_batches


@flow(name="publish")
def publish() -> list[str]:
    """Write one JSONL file per batch whose requests have all ended."""
    return publish_ready_batches()
