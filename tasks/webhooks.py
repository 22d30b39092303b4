"""The task that delivers lifecycle events to webhooks."""

from __future__ import annotations

from dataclasses import asdict

from offpeak.events.delivery import deliver_pending, from_settings
from tasks.retry import retried_task
from tasks.runtime import runtime


@retried_task
def deliver_webhooks() -> dict[str, int]:
    """Send the due webhook events, signed, each target's in order; failures retry later."""
    rt = runtime()
    guard, policy = from_settings(rt.settings)
    return asdict(deliver_pending(rt.db, guard, policy))
