"""Logging for every process (the API, the flows, the CLI): one set-up, ids on every line.

The ids an operator searches by (the caller's ``X-Request-ID``, the API key, the request,
batch, job and file) travel in a context variable, so a log call deep in the core names
them without being handed them. The variable holds one mutable dict per unit of work:
FastAPI runs dependencies and sync routes in worker threads with a *copy* of the
context, and a key id bound there must still reach the lines logged afterwards.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]

# The ids a log line may carry, in the order text lines show them.
FIELDS = ("x_request_id", "key_id", "request_id", "batch_id", "job_id", "file_id")

_ids: ContextVar[dict[str, str] | None] = ContextVar("offpeak_log_ids", default=None)


@contextmanager
def log_context(**ids: str | None) -> Iterator[dict[str, str]]:
    """Within the block, log lines carry ``ids`` (besides those bound outside it)."""
    scope = {**(_ids.get() or {}), **{k: v for k, v in ids.items() if v}}
    token = _ids.set(scope)
    try:
        yield scope
    finally:
        _ids.reset(token)


def bind(**ids: str | None) -> None:
    """Add ``ids`` to the current unit of work's lines (no-op outside a `log_context`)."""
    scope = _ids.get()
    if scope is not None:
        scope.update({k: v for k, v in ids.items() if v})


def current_ids() -> dict[str, str]:
    """The ids bound now."""
    return dict(_ids.get() or {})


class IdsFilter(logging.Filter):
    """Puts the bound ids on each record: as attributes (JSON) and as ``ids`` (text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get() or {}
        for name in FIELDS:
            if name in ids and not hasattr(record, name):
                setattr(record, name, ids[name])
        shown = " ".join(f"{n}={ids[n]}" for n in FIELDS if n in ids)
        record.ids = f" [{shown}]" if shown else ""
        return True


TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
HANDLER = "offpeak"


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # The text form's helper attribute; JSON lines carry each id on its own.
            reserved_attrs=[*JsonFormatter().reserved_attrs, "ids"],
        )
    return logging.Formatter(TEXT)


def setup_logging(
    fmt: LogFormat = "text", level: int = logging.INFO, logger: str | None = None
) -> None:
    """Send ``logger``'s records (the root's by default) to stderr, one line each in
    ``fmt``, with the bound ids. Called once per process: the API, `offpeak serve`, the
    CLI, and a flow run's first use of its services (there only for ``offpeak``'s own
    loggers, beside Prefect's handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(IdsFilter())
    handler.set_name(HANDLER)
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if h.get_name() == HANDLER]:
        target.removeHandler(old)  # a second call replaces the first, never doubles lines
    if logger is not None:
        target.propagate = False
    target.addHandler(handler)
    target.setLevel(level)
