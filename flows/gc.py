"""The gc flow: retention's garbage collector (daily, the `gc` deployment)."""

from __future__ import annotations

from prefect import flow

from tasks.gc import collect_expired


@flow(name="gc")
def gc() -> dict[str, int]:
    """Delete expired results, files, segments and chunk files, and mark their rows."""
    return collect_expired()
