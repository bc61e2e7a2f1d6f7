"""SSRF guard: what a provider URL may point at, checked when saved and again on every connect.

Saving checks the URL's shape and any literal address. Connecting goes through the transport's guarded resolver
(``anygate.transport.aiohttp_transport.GuardedResolver``):
every address a host name resolves to is checked, and aiohttp connects to exactly the addresses the
resolver returned, so a DNS answer cannot swap a checked address for an unchecked one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_REFUSED = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. cloud metadata 169.254.169.254
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("255.255.255.255/32"),
)
PRIVATE = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT
    ipaddress.ip_network("fc00::/7"),  # unique local
    ipaddress.ip_network("198.18.0.0/15"),
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}


class UnsafeURL(ValueError):
    """The URL may not be used as a provider URL; the message says why, with no secret in it."""


def validate_url_shape(url: str) -> None:
    """http or https, a host, no userinfo. Raises UnsafeURL (a ValueError, so pydantic reports it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("URL must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeURL("URL has no host")
    if literal_address(parts.hostname) is None and not is_host_name(parts.hostname):
        raise UnsafeURL("URL host is not a valid host name")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("URL must not carry a user name or password")
    if port == 0:
        raise UnsafeURL("URL has an invalid port")


def is_host_name(host: str) -> bool:
    """Whether ``host`` can be looked up: it encodes to IDNA (``bücher.example`` does, ``a\x8a`` does not)."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 (2002::/16),
    Teredo (2001::/32: its server and its client) and the deprecated IPv4-compatible ``::a.b.c.d``."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def check_address(address: IPAddress, allow_private_network: bool) -> None:
    """Refuse an address (or an IPv4 address embedded in it) that is never allowed, or private unless allowed."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        candidates.extend(embedded_ipv4(address))
    for candidate in candidates:
        shown = str(candidate) if candidate is address else f"{candidate} (inside {address})"
        if any(candidate in net for net in ALWAYS_REFUSED):
            raise UnsafeURL(f"address {shown} is link-local or a cloud metadata address and is never allowed")
        if not allow_private_network and any(candidate in net for net in PRIVATE):
            raise UnsafeURL(f"address {shown} is on a loopback or private network; set allow_private_network to use it")


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, allow_private_network: bool) -> None:
    """The checks that need no DNS: shape, literal addresses, metadata host names."""
    validate_url_shape(url)
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host in METADATA_HOSTS:
        raise UnsafeURL(f"host {host} is a cloud metadata service and is never allowed")
    if host == "localhost" or host.endswith(".localhost"):
        check_address(ipaddress.ip_address("127.0.0.1"), allow_private_network)
    address = literal_address(host)
    if address is not None:
        check_address(address, allow_private_network)


async def check_url_resolved(url: str, allow_private_network: bool) -> None:
    """``check_url`` plus every address the host resolves to now (when saving a provider).

    A host that does not resolve yet passes: the connect-time check in ``GuardedResolver`` still applies.
    """
    check_url(url, allow_private_network)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if literal_address(host) is not None:
        return
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        return
    for *_, sockaddr in answers:
        check_address(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), allow_private_network)
