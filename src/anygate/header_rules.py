"""Which headers a provider's configuration may add to its upstream requests, and what a value sent in
a header (a custom header's, a key's) may contain.

A provider's ``headers`` go on every request to it, over pooled connections. The headers that frame the
message or govern the connection (``Host``, ``Content-Length``, ``Transfer-Encoding``, ``Connection``,
...) belong to the HTTP client: set by hand they desynchronise a pooled connection, smuggle a second
request into it, or send the request to another virtual host. A CR, LF or NUL in a value would split
the header (aiohttp refuses it at send time, so every request to the provider failed). Both are refused
when a provider is saved (400 ``invalid_header``) and when the configuration is loaded (a ConfigError
naming the provider and the header); a stored row from before is skipped with a logged error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# RFC 9110 5.1 (RFC 7230 3.2): a field name is a token.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set by the HTTP client or hop-by-hop (RFC 9110 7.6.1): never from configuration.
FORBIDDEN_NAMES = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect"}
)
FORBIDDEN_PREFIXES = ("proxy-",)
# Control characters other than horizontal tab (RFC 9110 5.5): CR, LF and NUL among them.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidHeader(ValueError):
    """A header a provider may not set; the message names the header, never its value."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        shown = name if TOKEN.fullmatch(name) else repr(name)
        super().__init__(f"header {shown}: {reason}")


def check_header(name: str, value: str, to_proxy: bool = False) -> None:
    """Raise InvalidHeader when ``name: value`` may not be configured for a provider (``to_proxy``: for its
    egress proxy, where ``Proxy-Authorization`` and the other ``Proxy-*`` headers belong)."""
    if not TOKEN.fullmatch(name):
        raise InvalidHeader(name, "the name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only)")
    lowered = name.lower()
    if lowered in FORBIDDEN_NAMES or (lowered.startswith(FORBIDDEN_PREFIXES) and not to_proxy):
        raise InvalidHeader(name, "framing and hop-by-hop headers are set by the gateway, not configured")
    if has_control_characters(value):
        raise InvalidHeader(name, "the value contains a control character (CR, LF, NUL, ...)")


def check_headers(headers: Mapping[str, str], to_proxy: bool = False) -> None:
    for name, value in headers.items():
        check_header(name, value, to_proxy)


def has_control_characters(value: str) -> bool:
    """Whether ``value`` cannot be sent as a header value (it would end or split the header)."""
    return CONTROL_CHARACTERS.search(value) is not None
