"""Object ids: 24 lower-case hex characters, time-ordered and unguessable.

The one generator of ids, for every object and every ingest path. The first 6 bytes
are milliseconds since the epoch (so ids sort by creation time, page by creation and
index well), the last 6 come from the OS's CSPRNG: 2**48 possibilities per
millisecond make enumeration pointless.

:func:`new_ids` mints many at once in ascending order (id order is then input order:
an OpenAI file's lines, a dataset's rows). Their random parts are drawn independently
and sorted, never counted up from a start, so knowing one id tells nothing useful
about the next.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

import numpy as np
import pyarrow as pa

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


_RANDOM_BYTES = 6
# Random bytes are drawn from the OS in blocks: one getrandom() call per id costs more
# than the rest of minting it.
_BLOCK = 4096 * _RANDOM_BYTES
_pool = b""
_offset = 0
_lock = threading.Lock()
# The millisecond of the last new_ids call: the next one takes a later one, so ids of
# successive calls ascend too (within a process).
_last_ms = 0


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id(now_ms: int | None = None) -> str:
    """A fresh id; ``now_ms`` fixes the time part (tests, backfills)."""
    ms = _now_ms() if now_ms is None else now_ms
    return f"{ms & 0xFFFF_FFFF_FFFF:012x}{_random_hex()}"


def new_ids(count: int, now_ms: int | None = None) -> pa.StringArray:
    """``count`` fresh ids in strictly ascending order, all greater than those of earlier
    calls in this process (each call takes a later millisecond); ``now_ms`` fixes the
    time part instead.

    Each id's random part is drawn on its own: sorting ``count`` of them leaves each
    about 48 - log2(count) bits that a neighbour does not give away.
    """
    global _last_ms
    if now_ms is None:
        with _lock:
            ms = _last_ms = max(_now_ms(), _last_ms + 1)
    else:
        ms = now_ms
    while True:
        raw = np.frombuffer(secrets.token_bytes(8 * count), dtype=np.uint64)
        values = np.sort(raw >> np.uint64(16))  # 48 random bits each
        if count < 2 or bool(np.all(values[1:] != values[:-1])):
            break  # a repeat among them (rare below millions) is drawn again
    # Hex in one pass over the big-endian bytes: far cheaper than digit by digit.
    suffix = values.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:].tobytes().hex()
    digits = np.frombuffer(suffix.encode(), dtype=np.uint8).reshape(count, 12)
    prefix = np.frombuffer(f"{ms & 0xFFFF_FFFF_FFFF:012x}".encode(), dtype=np.uint8)
    data = np.concatenate([np.broadcast_to(prefix, (count, 12)), digits], axis=1)
    offsets = np.arange(0, 24 * count + 1, 24, dtype=np.int32)
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(data))
    )


def is_id(value: str) -> bool:
    """Whether ``value`` has the shape of an offpeak id."""
    return bool(ID_PATTERN.fullmatch(value))  # `$` alone would allow a trailing newline


def id_time_ms(value: str) -> int:
    """The creation time, in unix milliseconds, encoded in an id."""
    return int(value[:12], 16)
