"""Object ids: 24 lower-case hex characters, time-ordered and unguessable.

The first 6 bytes are milliseconds since the epoch (so ids sort by creation time and
index well), the last 6 are from the OS's CSPRNG: 2**48 possibilities per
millisecond make enumeration pointless.
"""

from __future__ import annotations

import re
import secrets
import time

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


def new_id(now_ms: int | None = None) -> str:
    """A fresh id; ``now_ms`` fixes the time part (tests, backfills)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return f"{ms & 0xFFFF_FFFF_FFFF:012x}{secrets.token_hex(6)}"


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an offpeak id."""
    return bool(ID_PATTERN.match(value))


def id_time_ms(value: str) -> int:
    """The creation time, in unix milliseconds, encoded in an id."""
    return int(value[:12], 16)
