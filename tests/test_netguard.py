"""The tests' network guard holds in the processes the tests start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import socket
try:
    socket.getaddrinfo("example.com", 443)
except socket.gaierror as exc:
    print("lookup refused:", exc)
for address in [("192.0.2.1", 9), ("10.0.0.1", 80), ("::ffff:10.0.0.1", 80)]:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        socket.socket(family).connect(address)
    except PermissionError as exc:
        print("connect refused:", exc)
    except OSError as exc:  # let through: unreachable in the probe's empty namespace
        print("connect failed:", exc)
print(socket.getaddrinfo("localhost", 80)[0][4][0])
"""


def run_probe(tmp_path: Path, **env: str) -> tuple[str, str]:
    """Run PROBE in a network namespace of its own (`unshare -n`, only a loopback that
    is down), so that nothing can leave this machine even if the guard lets it through."""
    log = tmp_path / "refused.log"
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", PROBE],
        env={**os.environ, "OFFPEAK_TEST_NETGUARD_LOG": str(log), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout, log.read_text() if log.exists() else ""


def test_a_child_process_cannot_look_up_names_or_leave_loopback(tmp_path: Path) -> None:
    out, log = run_probe(tmp_path)
    assert "lookup refused" in out and "no DNS lookup of 'example.com'" in out
    assert out.count("connect refused") == 3
    assert out.strip().endswith("127.0.0.1")  # /etc/hosts names still resolve
    assert log.count("refused") == 3  # and the session would fail on them


def test_networks_a_test_made_itself_are_allowed(tmp_path: Path) -> None:
    out, log = run_probe(tmp_path, OFFPEAK_TEST_NETS="192.0.2.0/24")
    assert out.count("connect refused") == 2
    assert "connect failed" in out  # 192.0.2.1 was let through, to an empty namespace
    assert "192.0.2.1" not in log
