"""The services of one flow-run process, opened on first use by its tasks.

A flow run is one process; its tasks share one set of services (a connection pool, an
object-store client), built by the one wiring function from the process's settings.
"""

from __future__ import annotations

from functools import cache

from offpeak.config import get_settings
from offpeak.services import Services, services


@cache
def runtime() -> Services:
    """This process's services."""
    return services(get_settings())
