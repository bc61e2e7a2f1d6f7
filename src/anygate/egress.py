"""Egress through an HTTP proxy: which proxy a request to a URL goes through, if any.

A ``Proxy`` is the proxy's URL (never with credentials in it) and the headers the proxy itself is sent
(``Proxy-Authorization``): on the ``CONNECT`` that opens a tunnel to an ``https://`` upstream, or with the
request itself to an ``http://`` one. Credentials written into a proxy URL (``http://user:pw@proxy:3128``,
as ``HTTPS_PROXY`` often has them) become a ``Proxy-Authorization: Basic`` header here, so that no URL a
log line or an error could show carries them.

``ProxyEnvironment`` is the standard variables' meaning: ``HTTPS_PROXY`` for ``https://`` URLs,
``HTTP_PROXY`` for ``http://`` ones, and ``NO_PROXY`` the hosts reached directly (a comma-separated list:
``*`` for every host; a host name, which matches itself and its subdomains, with or without a leading
``.``; an IP address or a CIDR block; any of them with ``:port``). Loopback hosts are always reached
directly: a proxy cannot reach this machine's loopback. The variables are read by ``anygate.settings``
only; this module is given their values.

The SSRF guard still holds through a proxy: the transport resolves and checks the upstream's host itself
before it sends anything to the proxy (``anygate.transport.aiohttp_transport``); the proxy is the
operator's own configuration.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from anygate.netguard import UnsafeURL, literal_address, validate_url_shape

PROXY_AUTHORIZATION = "Proxy-Authorization"


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP(S) proxy: its URL (``http://proxy.corp:3128``) and the headers sent to it."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Proxy({self.url}, headers={sorted(self.headers)})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What the proxy is sent that must never be shown: its header values (and a Basic token's text)."""
        found: list[str] = []
        for value in self.headers.values():
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("basic", "bearer"):
                found.append(token.strip())
        return tuple(found)


def parse_proxy(url: str, headers: Mapping[str, str] | None = None) -> Proxy:
    """A proxy from its URL (a bare ``host:port`` is ``http://``); credentials in the URL move to a
    ``Proxy-Authorization: Basic`` header unless one is given. Raises UnsafeURL for a URL that is no proxy."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    sent = dict(headers or {})
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if not any(name.lower() == PROXY_AUTHORIZATION.lower() for name in sent):
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            sent[PROXY_AUTHORIZATION] = f"Basic {token}"
        host = parts.hostname or ""
        shown_host = f"[{host}]" if ":" in host else host
        netloc = shown_host + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UnsafeURL("a proxy URL is a scheme, a host and a port only")
    clean = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    validate_url_shape(clean)
    return Proxy(clean, sent)


@dataclass(frozen=True, slots=True)
class NoProxyRule:
    """One ``NO_PROXY`` entry."""

    host: str | None = None  # a host name: itself and its subdomains
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None
    everything: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            address = literal_address(host)
            return address is not None and address.version == self.network.version and address in self.network
        assert self.host is not None
        return host == self.host or host.endswith("." + self.host)


def parse_no_proxy(entries: Iterable[str]) -> tuple[NoProxyRule, ...]:
    """``NO_PROXY``'s entries as rules; an entry that is none of the forms is skipped."""
    rules: list[NoProxyRule] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            rules.append(NoProxyRule(everything=True))
            continue
        rule = no_proxy_rule(entry)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def no_proxy_rule(entry: str) -> NoProxyRule | None:
    host, port = split_port(entry)
    try:
        network = ipaddress.ip_network(host.strip("[]"), strict=False)
    except ValueError:
        network = None
    if network is not None:
        return NoProxyRule(network=network, port=port)
    name = host.lstrip("*").lstrip(".").rstrip(".")
    return NoProxyRule(host=name, port=port) if name else None


def split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` → (host, port); an IPv6 address keeps its colons (``[::1]:8080`` or a bare ``::1``)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


@dataclass(frozen=True, slots=True)
class ProxyEnvironment:
    """``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY``, parsed."""

    https: Proxy | None = None
    http: Proxy | None = None
    no_proxy: tuple[NoProxyRule, ...] = ()

    def __repr__(self) -> str:
        return f"ProxyEnvironment(https={self.https!r}, http={self.http!r}, no_proxy={len(self.no_proxy)} rules)"

    def for_url(self, url: str) -> Proxy | None:
        """The proxy a request to ``url`` goes through (None: directly)."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http if parts.scheme == "http" else None
        if proxy is None:
            return None
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if is_loopback(host) or any(rule.matches(host, port) for rule in self.no_proxy):
            return None
        return proxy


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = literal_address(host)
    return address is not None and address.is_loopback
