"""The SSRF guard of webhook targets: which URLs offpeak may call, and the one way it
opens a connection to them.

A URL is checked when it is submitted and again at every delivery (DNS can change
between the two): every address its host resolves to must be public, and the socket is
opened to an address that was just vetted, never to the name (so a second lookup cannot
swap in another address). ``allow_private`` lifts the address rule and the https rule
for tests and local use; cloud metadata addresses stay refused either way.

Name resolution and connecting are injected, so tests can make any attempt to reach a
refused address fail the test before a packet is sent.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from offpeak.errors import WebhookUrlForbidden

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP addresses
Connector = Callable[[str, int, float], socket.socket]  # (ip, port, timeout) -> socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba):
# never a webhook receiver, and the classic SSRF prize.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookUrlForbidden(
            f"the webhook host {host!r} does not resolve: {exc}", code="webhook_url_unresolvable"
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def system_connect(ip: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((ip, port), timeout=timeout)


def refusal(address: str, *, allow_private: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None when it is allowed."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in METADATA:
        return "a cloud metadata address"
    if allow_private:
        return None
    for kind, test in (
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("an unspecified", ip.is_unspecified),
        ("a multicast", ip.is_multicast),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a non-public", not ip.is_global),  # shared (100.64/10), documentation, ...
    ):
        if test:
            return f"{kind} address"
    return None


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL."""

    scheme: str
    host: str
    port: int
    path: str  # with its query


@dataclass(frozen=True)
class Guard:
    """Checks webhook URLs and opens vetted connections to them."""

    allow_private: bool = False
    resolve: Resolver = system_resolve
    connect: Connector = system_connect

    def parse(self, url: str) -> Target:
        """The URL's parts, or :class:`WebhookUrlForbidden` (no address check)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise WebhookUrlForbidden(
                f"invalid webhook URL: {exc}", code="webhook_url_invalid"
            ) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookUrlForbidden(
                "a webhook URL must be an http(s) URL with a host", code="webhook_url_invalid"
            )
        if parts.username is not None or parts.password is not None:
            raise WebhookUrlForbidden(
                "a webhook URL must not carry credentials", code="webhook_url_invalid"
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = 443 if parts.scheme == "https" else 80
        return Target(parts.scheme, parts.hostname, port or default, path)

    def addresses(self, host: str, port: int) -> list[str]:
        """The host's addresses, all of them allowed, or :class:`WebhookUrlForbidden`.

        A name with one refused address among allowed ones is refused whole: an attacker
        who controls its DNS could otherwise pick which one is used."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            found = self.resolve(host, port)
        else:
            found = [str(literal)]
        if not found:
            raise WebhookUrlForbidden(
                f"the webhook host {host!r} has no address", code="webhook_url_unresolvable"
            )
        for address in found:
            reason = refusal(address, allow_private=self.allow_private)
            if reason:
                shown = host if host == address else f"{host!r} ({address})"
                raise WebhookUrlForbidden(
                    f"webhook URLs must not point at {reason}: {shown}; "
                    "set OFFPEAK_WEBHOOK_ALLOW_PRIVATE=true for local receivers"
                )
        return found

    def check(self, url: str) -> Target:
        """Vet a webhook URL as submitted: its addresses, then its scheme."""
        target = self.parse(url)
        self.addresses(target.host, target.port)
        if target.scheme != "https" and not self.allow_private:
            raise WebhookUrlForbidden("a webhook URL must use https", code="webhook_url_insecure")
        return target

    def open(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket to a freshly vetted address of ``host`` (the first that answers)."""
        last: OSError | None = None
        for address in self.addresses(host, port):
            try:
                return self.connect(address, port, timeout)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last


def check_webhook(url: str | None, *, allow_private: bool) -> None:
    """Vet a submitted ``webhook`` URL (none is fine): the API's check before it stores
    one, answering :class:`WebhookUrlForbidden` (422) with the reason."""
    if url is not None:
        Guard(allow_private=allow_private).check(url)
