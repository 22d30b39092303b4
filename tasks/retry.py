"""Which failures are worth a retry: storage and database hiccups, nothing else."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from offpeak.errors import StorageError


def transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for tasks that talk to storage or the database."""
    try:
        state.result()
    except (StorageError, OperationalError):
        return True
    except Exception:  # a bug or bad input: retrying would fail the same way
        return False
    return False


RETRIES = 3
RETRY_DELAYS: list[float] = [1, 5, 15]
