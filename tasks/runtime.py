"""The services of one flow-run process, opened on first use by its tasks.

A flow run is one process; its tasks share one set of services (a connection pool, an
object-store client), built by the one wiring function from the process's settings.
"""

from __future__ import annotations

from functools import cache

from offpeak.config import get_settings
from offpeak.logs import setup_logging
from offpeak.services import Services, services


@cache
def runtime() -> Services:
    """This process's services; the core's loggers set up on the way (Prefect's own
    loggers keep Prefect's handlers, which also feed the UI)."""
    settings = get_settings()
    setup_logging(settings.log_format, logger="offpeak")
    return services(settings)
