"""Time in unix seconds, the unit of every timestamp in the API."""

import time


def now() -> int:
    """The current unix time in whole seconds."""
    return int(time.time())
