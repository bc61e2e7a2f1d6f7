"""anygate: any OpenAI-compatible LLM endpoint behind one OpenAI-compatible API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["OpenAICompatibleProvider", "OpenRouterProvider", "ProviderType", "__version__"]

if TYPE_CHECKING:
    from anygate.catalog import ProviderType
    from anygate.upstream import OpenAICompatibleProvider, OpenRouterProvider


def __getattr__(name: str) -> Any:
    # The library classes load lazily so that ``anygate --help`` does not import aiohttp.
    if name in ("OpenAICompatibleProvider", "OpenRouterProvider"):
        from anygate import upstream

        return getattr(upstream, name)
    if name == "ProviderType":
        from anygate.catalog import ProviderType

        return ProviderType
    raise AttributeError(name)
