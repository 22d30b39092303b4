"""A fake network for the SSRF tests: names resolve from a table, and the connect
function lets only loopback through (optionally a stand-in for one public host), so a
broken guard fails the test instead of sending a packet anywhere."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import pytest

from offpeak.events.guard import Guard

PUBLIC = "93.184.215.14"  # a public address no test ever reaches


@dataclass
class Net:
    names: dict[str, list[str]] = field(default_factory=dict)
    # Loopback connections allowed (the receiver); everything else fails the test.
    loopback_ok: bool = False
    # Where a connection to PUBLIC is really sent: a loopback server playing that host.
    public_stand_in: tuple[str, int] | None = None
    lookups: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.names:
            pytest.fail(f"the guard looked up an unknown name {host!r}")
        return self.names[host]

    def connect(self, ip: str, port: int, timeout: float) -> socket.socket:
        self.connects.append(ip)
        if ip == PUBLIC and self.public_stand_in:
            return socket.create_connection(self.public_stand_in, timeout=timeout)
        if self.loopback_ok and ipaddress.ip_address(ip).is_loopback:
            return socket.create_connection((ip, port), timeout=timeout)
        pytest.fail(f"the guard let a connection to {ip} through")

    def guard(self, *, allow_private: bool = False) -> Guard:
        return Guard(allow_private=allow_private, resolve=self.resolve, connect=self.connect)


@pytest.fixture
def net() -> Net:
    return Net(
        names={
            "loopy.test": ["127.0.0.1"],
            "intranet.test": ["10.1.2.3"],
            "mixed.test": [PUBLIC, "192.168.1.10"],
            "metadata.test": ["169.254.169.254"],
            "v6local.test": ["::1"],
            "public.test": [PUBLIC],
        }
    )
