"""Which failures are worth a retry: storage and database hiccups, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
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


P = ParamSpec("P")
R = TypeVar("R")


def retried_task(fn: Callable[P, R]) -> Task[P, R]:
    """A task talking to storage or the database: never cached, retried on their
    hiccups (see `transient`), failed at once on anything else."""
    return task(
        cache_policy=NO_CACHE,
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=transient,
    )(fn)
