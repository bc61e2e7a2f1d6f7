"""Asking upstreams for usage on streams (``stream_options.include_usage``) only where it is welcome.

Whether anygate asks a provider, in this order: the provider's ``stream_usage`` setting; what this process
learned (an upstream that refused the field); what the last probe found (``POST /v1/providers/{id}/test``
stores it as ``capabilities.stream_usage``); the preset's default in the catalog; else yes. An upstream
that answers 400 or 422 to a request where anygate added the field gets the request once more without it,
so a client never sees an error anygate caused; when that works, the provider is not asked again until
the process restarts.

When anygate asked and the client did not, what the field added is taken out of the client's stream,
byte for byte: the final usage-only event, and the ``"usage":null`` member OpenAI-style upstreams put
in every chunk. ``"usage":null`` with unescaped quotes, after ``{`` or ``,``, can only be a member of
an object (inside a JSON string every quote is escaped), so removing it needs no parsing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from anygate.catalog import PRESETS

REFUSING_STATUSES = frozenset({400, 422})  # what upstreams answer to a field they do not know
# ``{"usage":null,`` (the member first: keep the brace) or ``,"usage":null`` (any later member).
NULL_USAGE_MEMBER = re.compile(rb'(\{\s*)"usage"\s*:\s*null\s*(?:,\s*|(?=\}))|,\s*"usage"\s*:\s*null(?=\s*[,}])')

RuntimeLookup = Callable[[str], Any]  # provider id -> ProviderRuntime | None (the registry's ``find``)


class StreamUsagePolicy:
    """Decides, per provider, whether a stream asks for usage; remembers providers that refused it."""

    def __init__(self, find: RuntimeLookup) -> None:
        self._find = find
        self._refused: set[str] = set()

    def asks(self, provider_id: str | None) -> bool:
        runtime = self._find(provider_id) if provider_id is not None else None
        if runtime is None:
            return True
        config = runtime.config
        if config.stream_usage is not None:
            return bool(config.stream_usage)
        if runtime.id in self._refused:
            return False
        probed = (runtime.capabilities or {}).get("stream_usage")
        if isinstance(probed, bool):
            return probed
        preset = PRESETS.get(config.type or "custom")
        return preset.stream_usage is not False if preset is not None else True

    def refused(self, provider_id: str) -> None:
        """The provider refused ``stream_options`` and answered without it: do not ask it again."""
        runtime = self._find(provider_id)
        self._refused.add(runtime.id if runtime is not None else provider_id)


def strip_null_usage(event: bytes) -> bytes:
    """The event without its ``"usage":null`` members (the rest of its bytes unchanged)."""
    return NULL_USAGE_MEMBER.sub(lambda match: match.group(1) or b"", event)
