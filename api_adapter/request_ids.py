"""`X-Request-ID`: taken from the caller (or made), answered back, and on every log line.

A caller's id is kept when it is a plausible id (a proxy's or a client's tracing id);
anything else (too long, odd characters that could forge log fields) is replaced by a
new one, never refused: the header is advisory. The ids in the path (request, batch,
file) are bound too, and the key id once the key is known (`api_adapter.deps`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import Message, Scope

from offpeak.logs import log_context

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Path parameters that name an id worth logging, under the log field they fill.
_PATH_IDS = {
    "request_id": "request_id",
    "batch_id": "batch_id",
    "message_batch_id": "batch_id",
    "file_id": "file_id",
}


def incoming_id(scope: Scope) -> str:
    """The caller's `X-Request-ID` when it is a plausible id, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            sent = value.decode("latin-1")
            if _VALID.fullmatch(sent):
                return sent
            break
    # A tracing id, not a secret: no system call for fresh randomness on every request
    # (uuid4 costs more than the rest of this middleware). Python reseeds after a fork.
    return f"{random.getrandbits(128):032x}"


@contextmanager
def request_scope(scope: Scope, params: dict[str, Any]) -> Iterator[str]:
    """Log ids for one HTTP request, for as long as it is served; yields its request id."""
    rid = incoming_id(scope)
    path_ids = {field: str(params[p]) for p, field in _PATH_IDS.items() if p in params}
    with log_context(x_request_id=rid, **path_ids):
        yield rid


def with_request_id(message: Message, rid: str) -> Message:
    """A response's start ``message`` with the request id among its headers."""
    headers = [(k, v) for k, v in message.get("headers", ()) if k != b"x-request-id"]
    return {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
