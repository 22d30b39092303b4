"""Hosts for the distributed tests: one network namespace per role, on one bridge.

Each host is a namespace of its own (`ip netns add`) with a veth pair whose outer end
is a port of a bridge the harness creates; the test process itself is the bridge's
first address, so it reaches every host and nothing else changes. The addresses are
the harness's own, in a private range, and no namespace has a default route: traffic
never leaves the bridge.

A host can be stopped (SIGKILL to every process in its namespace), paused (SIGSTOP)
and resumed, and cut off (its bridge port down) and brought back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.0"  # a /24 of the private range, used only on the harness's bridge
PREFIX = 24
# The tests' network guard (tests/netguard) lets this process and its children reach
# the harness's hosts, and nothing else off loopback.
os.environ["OFFPEAK_TEST_NETS"] = f"{SUBNET}.0/{PREFIX}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass
class Host:
    """One role's machine: a namespace, an address, the processes started in it."""

    name: str
    namespace: str
    address: str
    port_link: str  # the bridge's end of the host's veth pair
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Held while the process list changes: a supervisor reads it from its own thread.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spawn(
        self, args: Sequence[str], env: dict[str, str], log: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` inside this host; its output goes to ``log`` under the logs."""
        out = open(self.logs / (log or f"{self.name}.log"), "ab")  # noqa: SIM115 - child owns it
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        with self.lock:
            self.processes.append(process)
        return process

    def exited(self) -> list[subprocess.Popen[bytes]]:
        """The processes started here that exited on their own (not by :meth:`kill`),
        forgotten as they are returned."""
        with self.lock:
            gone = [p for p in self.processes if p.poll() is not None]
            self.processes = [p for p in self.processes if p not in gone]
        return gone

    def run(self, args: Sequence[str], env: dict[str, str] | None = None) -> str:
        """Run ``args`` inside this host to its end; what it printed."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} on {self.name} failed: {done.stderr[-2000:]}")
        return done.stdout

    def pids(self) -> list[int]:
        """Every process living in this host's namespace (children of children too)."""
        out = ip("netns", "pids", self.namespace, check=False).stdout
        return [int(p) for p in out.split()]

    def signal_all(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """Power off: SIGKILL to everything in the host, then reap what we started."""
        with self.lock:
            self.signal_all(signal.SIGKILL)
            for process in self.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
            self.processes = [p for p in self.processes if p.poll() is None]

    def pause(self) -> None:
        self.signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal_all(signal.SIGCONT)

    def cut(self) -> None:
        """Unplug the host's cable: its bridge port goes down, its processes run on."""
        ip("link", "set", self.port_link, "down")

    def heal(self) -> None:
        ip("link", "set", self.port_link, "up")

    def stop(self) -> None:
        """Shut down: SIGTERM, then SIGKILL what is left."""
        self.resume()
        self.heal()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()


class Network:
    """A bridge and the hosts on it; removed entirely by :meth:`close`."""

    def __init__(self, logs: Path, tag: str | None = None) -> None:
        self.tag = tag or f"{os.getpid() % 100000}"
        self.bridge = f"opkbr{self.tag}"[:15]
        self.logs = logs
        self.hosts: dict[str, Host] = {}
        self.address = f"{SUBNET}.1"  # the test process's own address on the bridge
        remove_leftovers()  # one harness at a time: the subnet is fixed
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.address}/{PREFIX}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        """A new host on the bridge, with the next address."""
        number = len(self.hosts) + 2
        namespace = f"opk{self.tag}-{name}"
        port_link = f"opv{self.tag}-{number}"[:15]
        address = f"{SUBNET}.{number}"
        ip("netns", "add", namespace)
        ip("link", "add", port_link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("link", "set", port_link, "master", self.bridge)
        ip("link", "set", port_link, "up")
        ip("-n", namespace, "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(name, namespace, address, port_link, self.logs)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        hosts = list(self.hosts.values())
        for host in hosts:
            host.resume()
            host.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(h.pids() for h in hosts) and time.monotonic() < deadline:
            time.sleep(0.2)
        for host in hosts:
            host.kill()
            ip("link", "del", host.port_link, check=False)
            ip("netns", "del", host.namespace, check=False)
        ip("link", "del", self.bridge, check=False)


def remove_leftovers() -> None:
    """Remove what an earlier harness run killed before its cleanup left behind: its
    namespaces (and their processes) and its bridge, found by this harness's names."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        namespace = line.split()[0] if line.strip() else ""
        if namespace.startswith("opk") and "-" in namespace:
            for pid in ip("netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", namespace, check=False)
    for line in ip("-br", "link", check=False).stdout.splitlines():
        if line.startswith(("opkbr", "opv")):
            ip("link", "del", line.split()[0].split("@")[0], check=False)
