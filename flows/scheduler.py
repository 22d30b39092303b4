"""The scheduler flow: one tick of planning, on a schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from offpeak.heartbeats import SCHEDULER, beat
from tasks.progress import record_expected_times
from tasks.publishing import publish_ready_batches
from tasks.runtime import runtime
from tasks.scheduling import (
    expire_overdue,
    launch_job,
    open_launch,
    plan_launches,
    recover_jobs,
    seal_leftovers,
    summary,
)
from tasks.webhooks import deliver_webhooks


def _late() -> bool:
    # After downtime the server may hand out a backlog of missed runs: run the
    # newest only, skip the rest.
    scheduled = flow_run.get_scheduled_start_time()
    lateness = (datetime.now(UTC) - scheduled).total_seconds()
    return lateness > max(runtime().settings.scheduler_interval, 60)


@flow(name="scheduler")
def scheduler() -> dict[str, Any]:
    """Seal leftovers, expire overdue requests, recover crashed jobs, launch new ones,
    publish finished batches, deliver webhook events."""
    log = get_run_logger()
    if _late():
        log.info("skipped: this run is late and a newer one follows")
        return {"skipped": "late"}
    sealed = seal_leftovers()
    expired = expire_overdue()
    recovered = recover_jobs()
    for stopped in recovered["relaunch"]:
        launch_job(stopped)
    planned = plan_launches()
    # For the API's expected_*_at: progress only, so its failure must not stop the tick.
    record_expected_times(planned, return_state=True)
    launched = []
    for launch in planned.launches:
        opened = open_launch(launch)
        if opened:
            launch_job(opened)
            launched.append(opened)
    published = publish_ready_batches()
    # Last: this tick's expiries and publications already have their events.
    webhooks = deliver_webhooks()
    report = {
        "sealed": sealed,
        "expired": expired,
        "relaunched": recovered["relaunch"],
        "failed_jobs": recovered["failed"],
        "launched": launched,
        "published": published,
        "webhooks": webhooks,
    }
    create_markdown_artifact(
        key="scheduler-plan",
        markdown=planned.report + _tick_markdown(summary(planned.launches), report),
        description="The carbon-aware plan of the last scheduler tick, per pool.",
    )
    log.info("tick: %s", report)
    beat(runtime().store, SCHEDULER)  # read by offpeak_scheduler_last_tick_timestamp_seconds
    return report


def _tick_markdown(launches: list[dict[str, Any]], report: dict[str, Any]) -> str:
    lines = [
        "",
        "## This tick",
        "",
        "| engine model | models | pool | job size |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p['engine_model']} | {', '.join(p['models'])} | {p['pool']} | {p['max_requests']} |"
        for p in launches
    ] or ["| (nothing launched) | | | |"]
    lines += ["", *(f"- **{k}**: {v}" for k, v in report.items())]
    return "\n".join(lines)
