"""The lifecycle vocabularies: statuses of requests and batches."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Lifecycle of requests and batches alike."""

    # A batch whose dataset is still being registered: its requests wait, unscheduled.
    VALIDATING = "validating"
    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
