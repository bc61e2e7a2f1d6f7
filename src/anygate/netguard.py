"""SSRF guard: what a provider URL may point at, checked when saved and again on every connect.

Saving checks the URL's shape and any literal address (and, through the API, every address the host
resolves to). Connecting goes through the transport's guard (``anygate.transport.pool.GuardedAddresses``;
through a proxy, ``anygate.transport.aiohttp_transport.GuardedResolver``): every address a host name
resolves to is checked, and the connection is made to exactly the addresses checked, so a DNS answer
cannot swap a checked address for an unchecked one. Both use ``classify``, one function.

An address is one of three kinds:
- never allowed: link-local (cloud metadata at 169.254.169.254), the metadata addresses of other clouds,
  multicast, unspecified, reserved, IPv6 site-local, and every other special-purpose range that is not
  globally reachable (documentation, benchmarking excepted, protocol assignments, ...);
- private: loopback, RFC 1918, CGNAT, unique-local IPv6, benchmarking (198.18.0.0/15), and the local-use
  NAT64 prefix: allowed only with ``allow_private_network``;
- public: everything globally reachable.
An IPv6 address that carries an IPv4 address (IPv4-mapped or -translated, IPv4-compatible, NAT64, 6to4,
Teredo) is judged by the IPv4 addresses inside it.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("fd00:ec2::254"),  # AWS metadata over IPv6 (inside unique-local space)
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud metadata (inside CGNAT space)
    }
)
# Where operators run backends: allowed with ``allow_private_network``.
PRIVATE_NETWORKS = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT (shared address space)
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking networks
    ipaddress.ip_network("fc00::/7"),  # unique local
)
# IANA special-purpose ranges that are not globally reachable but that the standard library of the
# Python versions anygate supports (3.11, 3.12) still calls global.
NOT_GLOBAL = (
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("192.88.99.0/24"),  # the deprecated 6to4 relay anycast
)
GLOBAL_EXCEPTIONS = frozenset({ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")})
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}


class Reach(enum.IntEnum):
    """What an address is, in order of concern (the worst of several wins)."""

    PUBLIC = 0
    PRIVATE = 1
    NEVER = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    reach: Reach
    reason: str  # what the address is, for the refusal message
    address: IPAddress


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


# ------------------------------------------------------------------------------------------ addresses


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-translated
    (``::ffff:0:a.b.c.d``), the deprecated IPv4-compatible ``::a.b.c.d``, NAT64 (``64:ff9b::/96``, and the
    local-use ``64:ff9b:1::/48`` read as a /96 prefix), 6to4 (``2002::/16``) and Teredo (``2001::/32``: its
    server and its client)."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    last_32_bits = (
        address in NAT64_WELL_KNOWN
        or address in NAT64_LOCAL_USE
        or address in IPV4_TRANSLATED
        or (address in IPV4_COMPATIBLE and int(address) > 1)
    )
    if last_32_bits:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def bits(value: int, start: int, length: int) -> int:
    """``length`` bits of a 128-bit ``value`` from bit ``start`` (0 is the most significant)."""
    return (value >> (128 - start - length)) & ((1 << length) - 1)


def local_use_nat64_layouts(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address inside a local-use NAT64 address under the other prefix lengths a translator may
    use there (RFC 6052: /48, /56 and /64; bits 64-71 are skipped)."""
    value = int(address)
    return [
        ipaddress.IPv4Address((bits(value, 48, 16) << 16) | bits(value, 72, 16)),
        ipaddress.IPv4Address((bits(value, 56, 8) << 24) | bits(value, 72, 24)),
        ipaddress.IPv4Address(bits(value, 72, 32)),
    ]


def classify(address: IPAddress) -> Verdict:
    """What ``address`` is: at save time and at connect time alike. An IPv6 address that carries IPv4
    addresses is what the worst of them is."""
    if isinstance(address, ipaddress.IPv6Address):
        inside = embedded_ipv4(address)
        if inside:
            verdicts = [classify_plain(candidate) for candidate in inside]
            if address in NAT64_LOCAL_USE:
                verdicts.append(Verdict(Reach.PRIVATE, "local-use NAT64", address))
                # Which layout the translator uses is unknown here: none may lead to a metadata service.
                verdicts.extend(metadata_only(candidate) for candidate in local_use_nat64_layouts(address))
            return max(verdicts, key=lambda verdict: verdict.reach)
    return classify_plain(address)


def classify_plain(address: IPAddress) -> Verdict:
    """``classify`` for an address taken as it is, by the standard library's properties."""
    never = metadata_only(address)
    if never.reach is Reach.NEVER:
        return never
    if address.is_loopback:
        return Verdict(Reach.PRIVATE, "loopback", address)
    for refused, reason in (
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "IPv6 site-local"),
        (address.is_reserved, "reserved"),
    ):
        if refused:
            return Verdict(Reach.NEVER, reason, address)
    if any(address in network for network in PRIVATE_NETWORKS):
        return Verdict(Reach.PRIVATE, "private", address)
    if not is_globally_reachable(address):
        return Verdict(Reach.NEVER, "a special-purpose address that is not globally reachable", address)
    return Verdict(Reach.PUBLIC, "public", address)


def metadata_only(address: IPAddress) -> Verdict:
    """NEVER for link-local and cloud metadata addresses, else PUBLIC (nothing more is judged)."""
    if address in METADATA_ADDRESSES:
        return Verdict(Reach.NEVER, "a cloud metadata address", address)
    if address.is_link_local:
        return Verdict(Reach.NEVER, "link-local (where cloud metadata services answer)", address)
    return Verdict(Reach.PUBLIC, "public", address)


def is_globally_reachable(address: IPAddress) -> bool:
    if address in GLOBAL_EXCEPTIONS:
        return True
    return address.is_global and not any(address in network for network in NOT_GLOBAL)


def check_address(address: IPAddress, allow_private_network: bool) -> None:
    """Refuse an address that is never allowed, or private unless ``allow_private_network``."""
    verdict = classify(address)
    if verdict.reach is Reach.PUBLIC:
        return
    shown = str(verdict.address) if verdict.address == address else f"{verdict.address} (inside {address})"
    if verdict.reach is Reach.NEVER:
        raise UnsafeURL(f"address {shown} is {verdict.reason} and is never allowed")
    if not allow_private_network:
        raise UnsafeURL(
            f"address {shown} is on a loopback or private network ({verdict.reason}); "
            "set allow_private_network to use it"
        )


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ URLs


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

    A host that does not resolve yet passes: the check at every connect still applies.
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
