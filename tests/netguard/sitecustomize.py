"""The tests' network guard, loaded into every Python process a test run starts.

tests/conftest.py puts this folder first on PYTHONPATH, so the pytest process and every
Python child (the API, Prefect, workers, flow runs, the demo) import it at start-up. It
keeps their traffic on this machine even when the code under test is wrong: a name
lookup that would ask a DNS server is refused (names in /etc/hosts still resolve, without
a query), and a connection to an address outside loopback and OFFPEAK_TEST_NETS (the
networks of namespaces a test made itself) is refused and written to
OFFPEAK_TEST_NETGUARD_LOG, which the test session reads at its end and fails on.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

LOOPBACK = ("127.0.0.0/8", "::1/128")
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _hosts_names() -> frozenset[str]:
    names = {"localhost"}
    try:
        with open("/etc/hosts", encoding="utf-8") as hosts:
            for line in hosts:
                names.update(line.split("#", 1)[0].split()[1:])
    except OSError:
        pass
    return frozenset(name.lower() for name in names)


_HOSTS = _hosts_names()


def _allowed(address: str) -> bool | None:
    """True or False for an address literal (by the allowed networks), None for a name."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    extra = os.environ.get("OFFPEAK_TEST_NETS", "")
    networks = [*LOOPBACK, *(net for net in extra.split(",") if net.strip())]
    return any(ip in ipaddress.ip_network(net.strip()) for net in networks)


def _record(what: str) -> None:
    log = os.environ.get("OFFPEAK_TEST_NETGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"pid {os.getpid()} ({' '.join(sys.argv[:2])}): {what}\n")


def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    if name and _allowed(name) is None and name.lower().rstrip(".") not in _HOSTS:
        raise socket.gaierror(socket.EAI_NONAME, f"test network guard: no DNS lookup of {name!r}")
    return _getaddrinfo(host, port, *args, **kwargs)


def _check(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        if _allowed(host) is False or (
            _allowed(host) is None and host.lower().rstrip(".") not in _HOSTS
        ):
            _record(f"connect to {address!r} refused")
            raise PermissionError(f"test network guard: no connection to {address!r}")


def connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    _connect(self, address)


def connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _connect_ex(self, address)


if os.environ.get("OFFPEAK_TEST_NETGUARD") != "off":
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
