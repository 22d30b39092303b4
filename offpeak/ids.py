"""Object ids: 24 lower-case hex characters, time-ordered and unguessable.

The first 6 bytes are milliseconds since the epoch (so ids sort by creation time and
index well), the last 6 are from the OS's CSPRNG: 2**48 possibilities per
millisecond make enumeration pointless.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


_RANDOM_BYTES = 6
# Random bytes are drawn from the OS in blocks: one getrandom() call per id costs more
# than the rest of minting it.
_BLOCK = 4096 * _RANDOM_BYTES
_pool = b""
_offset = 0
_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child must never replay the random bytes its parent hands out.
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _random_hex() -> str:
    global _pool, _offset
    with _lock:
        if _offset >= len(_pool):
            _pool, _offset = secrets.token_bytes(_BLOCK), 0
        chunk = _pool[_offset : _offset + _RANDOM_BYTES]
        _offset += _RANDOM_BYTES
    return chunk.hex()


def new_id(now_ms: int | None = None) -> str:
    """A fresh id; ``now_ms`` fixes the time part (tests, backfills)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return f"{ms & 0xFFFF_FFFF_FFFF:012x}{_random_hex()}"


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an offpeak id."""
    return bool(ID_PATTERN.match(value))


def id_time_ms(value: str) -> int:
    """The creation time, in unix milliseconds, encoded in an id."""
    return int(value[:12], 16)
