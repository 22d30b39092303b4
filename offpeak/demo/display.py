"""Terminal output of `make demo`: section headers, one-line JSON, a live progress line."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

TTY = sys.stdout.isatty()


class DemoError(Exception):
    """A step of the demo did not go as expected."""


def header(title: str) -> None:
    line = f"== {title} =="
    print(f"\n\033[1m{line}\033[0m" if TTY else f"\n{line}", flush=True)


def note(text: str = "") -> None:
    print(f"   {text}", flush=True)


def compact(obj: object, limit: int = 0) -> str:
    """``obj`` as one line of JSON, cut to ``limit`` characters when given."""
    text = json.dumps(obj, ensure_ascii=False)
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


def show(response: requests.Response, expect: int, limit: int = 200, quiet: bool = False) -> Any:
    """Print ``response`` as one line (``quiet``: only if its status is not ``expect``)
    and return its JSON body; fail on another status."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    method = response.request.method if response.request else "?"
    path = urlsplit(response.url).path
    if not quiet or response.status_code != expect:
        note(f"{method} {path} -> {response.status_code} {compact(body, limit)}")
    if response.status_code != expect:
        raise DemoError(f"{method} {path} answered {response.status_code}, expected {expect}")
    return body


def counts_text(counts: Mapping[str, int]) -> str:
    """``{"completed": 3, "failed": 0, ...}`` as ``3 completed``; zeros and totals left out."""
    parts = [f"{n} {status}" for status, n in counts.items() if n and status != "total"]
    return ", ".join(parts) or "none"


def jobs_text(jobs: Counter[str]) -> str:
    """Inference jobs per status, shortest when there is one."""
    if not jobs:
        return "no job yet"
    if jobs.total() == 1:
        return f"job {next(iter(jobs))}"
    return f"jobs: {counts_text(jobs)}"


class Progress:
    """One refreshing line on a terminal; a line every ``every`` seconds otherwise."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.started = time.monotonic()
        self._printed_at = -every
        self._printed = ""

    def update(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"{elapsed:4.0f}s {text}"
        if TTY:
            width = shutil.get_terminal_size().columns - 4
            print(f"\r\033[K   {line[:width]}", end="", flush=True)
        elif text != self._printed and elapsed - self._printed_at >= self.every:
            note(line)
            self._printed_at, self._printed = elapsed, text

    def done(self, text: str) -> None:
        """The final state, always shown, and the line closed."""
        if TTY:
            self.update(text)
            print(flush=True)
        else:
            note(f"{time.monotonic() - self.started:4.0f}s {text}")
