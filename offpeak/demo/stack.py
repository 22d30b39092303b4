"""The demo's stack: `offpeak serve` in a process group of its own, and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

from offpeak.demo.display import (
    DemoError,
    note,
)

HOST = "127.0.0.1"
STARTUP_TIMEOUT, STOP_TIMEOUT = 240.0, 60.0


# --- processes ----------------------------------------------------------------------------


def offpeak_command() -> str:
    """The venv's `offpeak` script, next to the running interpreter."""
    script = Path(sys.executable).with_name("offpeak")
    if not script.is_file():
        raise DemoError(f"{script} not found: install the project first (make install)")
    return str(script)


def cli(env: dict[str, str], *args: str) -> str:
    """Run `offpeak ARGS` and return what it printed; fail with its error output."""
    note("$ offpeak " + " ".join(args))
    done = subprocess.run(
        [offpeak_command(), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise DemoError(f"`offpeak {' '.join(args)}` failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "   (no log)"
    return "\n".join(f"   | {line}" for line in text[-lines:])


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api_port: int
    prefect_port: int
    log: Path
    stopped: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.api_port}/v1"

    @property
    def prefect_ui(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise DemoError(f"offpeak serve exited ({self.process.returncode}):\n{tail(self.log)}")

    def wait_healthy(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < STARTUP_TIMEOUT:
            self.check_alive()
            with suppress(requests.ConnectionError):
                if requests.get(f"http://{HOST}:{self.api_port}/healthz", timeout=2).ok:
                    note(f"GET /healthz -> 200 after {time.monotonic() - started:.0f}s")
                    return
            time.sleep(0.5)
        raise DemoError(f"the stack was not up after {STARTUP_TIMEOUT:.0f}s:\n{tail(self.log)}")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; then kill its process group (its own: start_new_session) if
        it hangs, or if it left a process behind. Its exit code."""
        if self.stopped:
            return self.process.wait()
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                note(f"offpeak serve did not stop within {STOP_TIMEOUT:.0f}s: killing it")
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, 0)  # raises when the group is empty
            note("killing the processes it left running (flow runs of its stopped worker)")
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[Stack]:
    """`offpeak serve` in a process group of its own, always stopped afterwards."""
    api_port, prefect_port = free_ports(2)
    command = ["serve", "--port", str(api_port), "--prefect-port", str(prefect_port)]
    note(f"$ offpeak {' '.join(command)}   (log: {log})")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [offpeak_command(), *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C reaches it through stop() only
        )
    stack = Stack(process, api_port, prefect_port, log)
    try:
        yield stack
    finally:
        stack.stop()
