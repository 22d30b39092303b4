"""The inference flow: one job, deployed per pool."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks.inference import run_job


@flow(name="inference")
def inference(job_id: str) -> dict[str, Any]:
    """Run one job's requests through vLLM, account its carbon, then publish the
    batches it finished."""
    report = run_job(job_id)  # publishes them too, as soon as the job is completed
    create_markdown_artifact(
        key=f"job-{job_id}-report",
        markdown="\n".join(
            [
                f"# Job {job_id}",
                "",
                *(f"- **{k}**: {v}" for k, v in report.items()),
            ]
        ),
    )
    return report
