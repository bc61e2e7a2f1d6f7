"""Host names for loopback tests: a DNS resolver that answers from a table (no real DNS is asked).

transport = AiohttpTransport(resolver=lambda: MappedResolver({"upstream.test": "127.0.0.1"}))
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult


class MappedResolver(AbstractResolver):
    """Answers each name from ``names`` (a literal address answers itself); any other name does not resolve."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = dict(names)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.names.get(host, host)
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise OSError(f"{host} does not resolve (not in the test's table)") from None
        kind = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": kind, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None
