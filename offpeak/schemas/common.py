"""What every body shares: strict models (unknown fields refused) and the completion-window
grammar."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Unknown fields are refused with a clear 422 rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


# ASCII digits only, the whole string (no trailing newline), at most 4 digits.
_WINDOW = re.compile(r"([0-9]{1,4})([mhd])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 72 * 3600


def window_seconds(window: str) -> int:
    """Seconds in a completion window such as ``24h``, ``10m`` or ``3d``."""
    match = _WINDOW.fullmatch(window)
    if not match:
        raise ValueError(f"completion_window {window!r} is not a duration like '24h' or '10m'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"completion_window {window!r} must be between 1m and 72h")
    return seconds
