"""Readiness: whether this API process can do its work now, and what is down if not.

`/healthz` says the process is alive; `/readyz` asks the database and the object store
(each within a few seconds) and reads the seal writer's own report. The answer names
what is down, so an operator or a load balancer sees the cause without reading logs.
Error texts stay in the log: the body names only the error's class, because it is
served without authentication.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api_adapter.deps import Services
from offpeak.ingest.sealing import count_unsealed

PROBE_SECONDS = 5.0  # a dependency that takes longer to answer counts as down
T = TypeVar("T")

Part = Literal["database", "storage", "sealing"]


class Check(BaseModel):
    ok: bool = Field(description="Whether this part answered.")
    error: str | None = Field(None, description="The error's class when it did not.")


class SealingCheck(Check):
    alive: bool = Field(description="Whether the seal writer's thread runs.")
    unsealed_rows: int | None = Field(
        description="Accepted requests not yet sealed into a segment (null when the "
        "database does not answer)."
    )
    buffered: int = Field(description="Rows handed to the writer, waiting in memory.")
    seconds_since_last_seal: float = Field(
        description="Seconds since the writer's last successful pass."
    )
    max_lag_seconds: float = Field(description="Above this lag, sealing counts as down.")
    failures: int = Field(description="The writer's failed passes in a row.")


class Readiness(BaseModel):
    """The answer of `/readyz`: 200 when nothing is down, else 503."""

    status: Literal["ready", "unavailable"] = Field(description="`ready` when nothing is down.")
    down: list[Part] = Field(description="The parts that are down, if any.")
    database: Check
    storage: Check
    sealing: SealingCheck


async def _probe(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """``call``'s result, or the name of its error; off the event loop, time-bounded."""
    try:
        return await asyncio.wait_for(run_in_threadpool(call), PROBE_SECONDS), None
    except TimeoutError:
        return None, "Timeout"
    except Exception as exc:  # a probe reports any failure, it never raises
        return None, type(exc).__name__


async def readiness(services: Services) -> Readiness:
    """Ask the database and the store at once, and read the seal writer's status."""
    (unsealed, db_error), (_, store_error) = await asyncio.gather(
        _probe(lambda: count_unsealed(services.db)), _probe(services.store.check)
    )
    status = services.writer.status()
    lag, max_lag = status.lag(time.time()), services.settings.ready_max_seal_lag
    sealing_ok = status.alive and lag <= max_lag
    sealing_error = status.last_error and status.last_error.split(":", 1)[0]
    checks: dict[Part, bool] = {
        "database": db_error is None,
        "storage": store_error is None,
        "sealing": sealing_ok,
    }
    down = [part for part, ok in checks.items() if not ok]
    return Readiness(
        status="unavailable" if down else "ready",
        down=down,
        database=Check(ok=db_error is None, error=db_error),
        storage=Check(ok=store_error is None, error=store_error),
        sealing=SealingCheck(
            ok=sealing_ok,
            error=sealing_error or (None if status.alive else "WriterStopped"),
            alive=status.alive,
            unsealed_rows=unsealed,
            buffered=status.buffered,
            seconds_since_last_seal=round(lag, 3),
            max_lag_seconds=max_lag,
            failures=status.failures,
        ),
    )
