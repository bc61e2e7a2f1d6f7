"""Readiness: whether each thing a process depends on answers now (the store, Redis, the tokenizer...)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from anygate.errors import NotReady

Probe = Callable[[], Awaitable[None]]  # returns when ready; raises NotReady (its message is shown) otherwise
PROBE_TIMEOUT = 2.0


class Readiness:
    __slots__ = ("_probes",)

    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}

    def __repr__(self) -> str:
        return f"Readiness({sorted(self._probes)})"

    def add(self, name: str, probe: Probe) -> None:
        self._probes[name] = probe

    async def check(self) -> dict[str, str]:
        """Each dependency's state: ``ok`` or why not."""
        results: dict[str, str] = {}
        for name, probe in self._probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT)
            except NotReady as exc:
                results[name] = str(exc)
            except (TimeoutError, OSError, RuntimeError) as exc:
                results[name] = f"unavailable ({type(exc).__name__})"
            else:
                results[name] = "ok"
        return results
