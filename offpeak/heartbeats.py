"""Heartbeats: when a periodic flow last finished, for the `no scheduler tick` alert.

A tick leaves no row of its own in the state DB (a quiet tick changes nothing), so its
time goes to a tiny object in the store, where every API replica reads it. Losing it
costs nothing but one alert's input until the next tick.
"""

from __future__ import annotations

import json
import time

from offpeak.errors import ObjectNotFound
from offpeak.storage import ObjectStore

SCHEDULER = "scheduler"


def _key(name: str) -> str:
    return f"heartbeats/{name}.json"


def beat(store: ObjectStore, name: str, at: float | None = None) -> None:
    """Record that ``name`` finished a run at ``at`` (now by default)."""
    store.put(_key(name), json.dumps({"at": time.time() if at is None else at}).encode())


def last_beat(store: ObjectStore, name: str) -> float | None:
    """Unix time of ``name``'s last run, or None if it never ran (or the object is unreadable)."""
    try:
        at = json.loads(store.get(_key(name)))["at"]
    except (ObjectNotFound, ValueError, KeyError, TypeError):
        return None
    return float(at)
