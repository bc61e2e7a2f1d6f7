"""Provider presets as data, and provider-name detection from a base URL.

A preset is a row: adding a vendor is a data change. A ``custom`` provider is a preset with no defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

AuthStyle = Literal["bearer", "api-key", "x-api-key", "none"]
QuotaFormat = Literal["neutral", "openrouter", "litellm"]
# What a provider speaks besides chat completions: ``openai`` (the OpenAI API), or ``anthropic`` (the Anthropic
# Messages API, to which ``/v1/messages`` requests pass through as they are).
ApiStyle = Literal["openai", "anthropic"]
ANTHROPIC_VERSION = "2023-06-01"  # sent to an ``anthropic`` provider when the client names no version

DEFAULT_PROXY_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST", "chat/completions"),
    ("POST", "completions"),
    ("POST", "embeddings"),
    ("GET", "models"),
)


@dataclass(frozen=True)
class QuotaEndpoint:
    path: str
    format: QuotaFormat


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    base_url: str | None
    hosts: tuple[str, ...] = ()
    auth: AuthStyle = "bearer"
    keyless: bool = False
    allow_private_network: bool = False
    has_models_endpoint: bool = True
    static_models: tuple[str, ...] = ()
    quota: QuotaEndpoint | None = None
    ollama_tags_fallback: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Accepts ``stream_options.include_usage`` on streams: True, False (refuses it), None (not known: tried).
    stream_usage: bool | None = None
    api: ApiStyle = "openai"
    # Serves the Responses API (``/responses``): True, False (bridged over chat completions), None (not known:
    # tried, and bridged from its first 404 or 405).
    responses: bool | None = None


PRESETS: dict[str, Preset] = {
    p.id: p
    for p in (
        Preset(
            "openai",
            "OpenAI",
            "https://api.openai.com/v1",
            ("api.openai.com",),
            stream_usage=True,
            responses=True,
        ),
        Preset(
            "anthropic",
            "Anthropic",
            "https://api.anthropic.com/v1",
            ("anthropic.com",),
            auth="x-api-key",
            api="anthropic",
            responses=False,
        ),
        Preset(
            "openrouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            ("openrouter.ai",),
            quota=QuotaEndpoint("/key", "openrouter"),
            stream_usage=True,
        ),
        Preset("together", "Together AI", "https://api.together.xyz/v1", ("together.xyz", "together.ai")),
        Preset("groq", "Groq", "https://api.groq.com/openai/v1", ("groq.com",), stream_usage=True),
        Preset(
            "deepseek",
            "DeepSeek",
            "https://api.deepseek.com/v1",
            ("deepseek.com",),
            stream_usage=True,
            responses=False,
        ),
        Preset(
            "mistral",
            "Mistral AI",
            "https://api.mistral.ai/v1",
            ("mistral.ai",),
            stream_usage=False,  # refuses unknown fields (422); reports usage on streams unasked
            responses=False,
        ),
        Preset(
            "xai",
            "xAI",
            "https://api.x.ai/v1",
            ("x.ai",),
            stream_usage=True,
        ),
        Preset("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1", ("fireworks.ai",)),
        Preset(
            "perplexity",
            "Perplexity",
            "https://api.perplexity.ai",
            ("perplexity.ai",),
            has_models_endpoint=False,
            static_models=("sonar", "sonar-pro", "sonar-reasoning", "sonar-reasoning-pro", "sonar-deep-research"),
        ),
        Preset(
            "cohere", "Cohere", "https://api.cohere.ai/compatibility/v1", ("cohere.ai", "cohere.com"), responses=False
        ),
        Preset("minimax", "MiniMax", "https://api.minimax.io/v1", ("minimax.io", "minimaxi.com")),
        Preset("moonshot", "Moonshot AI", "https://api.moonshot.ai/v1", ("moonshot.ai", "moonshot.cn")),
        Preset(
            "ollama",
            "Ollama",
            "http://localhost:11434/v1",
            keyless=True,
            allow_private_network=True,
            ollama_tags_fallback=True,
        ),
        Preset("vllm", "vLLM", "http://localhost:8000/v1", keyless=True, allow_private_network=True, stream_usage=True),
        Preset("lmstudio", "LM Studio", "http://localhost:1234/v1", keyless=True, allow_private_network=True),
        Preset(
            "litellm",
            "LiteLLM",
            "http://localhost:4000/v1",
            allow_private_network=True,
            quota=QuotaEndpoint("/key/info", "litellm"),
            stream_usage=True,
        ),
        Preset("azure", "Azure OpenAI", None, ("azure.com",), auth="api-key"),
        Preset("custom", "Custom Provider", None),
    )
}

GENERIC_NAME = "OpenAI Compatible"


class ProviderType(StrEnum):
    """Provider types by name, for library users (seed 003's ``ProviderType``): every preset (``CUSTOM``
    included), and ``OPENAI_COMPATIBLE`` for an endpoint on no preset's host (also the id of the provider
    the ``OPENAI_COMPATIBLE_*`` variables define). Members are strings: ``ProviderType.GROQ == "groq"``."""

    OPENAI_COMPATIBLE = "openai_compatible"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OPENROUTER = "openrouter"
    TOGETHER = "together"
    GROQ = "groq"
    DEEPSEEK = "deepseek"
    MISTRAL = "mistral"
    XAI = "xai"
    FIREWORKS = "fireworks"
    PERPLEXITY = "perplexity"
    COHERE = "cohere"
    MINIMAX = "minimax"
    MOONSHOT = "moonshot"
    OLLAMA = "ollama"
    VLLM = "vllm"
    LMSTUDIO = "lmstudio"
    LITELLM = "litellm"
    AZURE = "azure"
    CUSTOM = "custom"

    @classmethod
    def detect(cls, base_url: str) -> ProviderType:
        """The preset whose host ``base_url`` is on, else ``OPENAI_COMPATIBLE``."""
        host = (urlsplit(base_url).hostname or "").lower()
        for preset in PRESETS.values():
            if any(host == h or host.endswith("." + h) for h in preset.hosts):
                return cls(preset.id)
        return cls.OPENAI_COMPATIBLE


def detect_provider_name(base_url: str) -> str:
    """Name a provider from its base URL; seed 003's rules first, then each catalog host."""
    host = (urlsplit(base_url).hostname or "").lower()
    for preset in PRESETS.values():
        if any(host == h or host.endswith("." + h) for h in preset.hosts):
            return preset.name
    return GENERIC_NAME


def key_env_name(provider_id: str) -> str:
    """``my-gateway`` → ``MY_GATEWAY_API_KEY``: upper-cased, each run outside A-Z0-9 made one ``_``."""
    return re.sub(r"[^A-Z0-9]+", "_", provider_id.upper()) + "_API_KEY"


def join_url(base_url: str, endpoint: str) -> str:
    """``https://x/v1`` + ``chat/completions`` → ``https://x/v1/chat/completions`` (one slash between).

    A query on the base URL (Azure's ``?api-version=...``) stays at the end of the joined URL.
    """
    base, has_query, query = base_url.partition("?")
    joined = base.rstrip("/") + "/" + endpoint.lstrip("/")
    return f"{joined}?{query}" if has_query else joined


@dataclass(frozen=True)
class CloudflareRoute:
    """Where Cloudflare AI Gateway serves a vendor: its slug, and the path under it that stands for the
    preset's base URL (``v1`` where Cloudflare keeps the vendor's own version segment)."""

    slug: str
    path: str = ""


DEFAULT_CLOUDFLARE_HOST = "https://gateway.ai.cloudflare.com"
# The presets Cloudflare AI Gateway fronts, as its provider pages document them
# (developers.cloudflare.com/ai-gateway/usage/providers/): Together, Fireworks, MiniMax and Moonshot have no
# page there, and Azure OpenAI's route names a resource and a deployment that no preset knows.
CLOUDFLARE_ROUTES: dict[str, CloudflareRoute] = {
    "openai": CloudflareRoute("openai"),
    "openrouter": CloudflareRoute("openrouter"),
    "groq": CloudflareRoute("groq"),
    "deepseek": CloudflareRoute("deepseek"),
    "mistral": CloudflareRoute("mistral", "v1"),
    "xai": CloudflareRoute("grok", "v1"),
    "perplexity": CloudflareRoute("perplexity-ai"),
    "cohere": CloudflareRoute("cohere", "compatibility/v1"),
    "anthropic": CloudflareRoute("anthropic", "v1"),
}


def cloudflare_base_url(preset: Preset, account_id: str, gateway_id: str, host: str = DEFAULT_CLOUDFLARE_HOST) -> str:
    """The Cloudflare AI Gateway URL fronting ``preset``, in Cloudflare's own slugs and paths, on ``host``
    (Cloudflare's, or a self-hosted or test stand-in)."""
    route = CLOUDFLARE_ROUTES.get(preset.id)
    if route is None:
        raise ValueError(f"Cloudflare AI Gateway does not front provider type '{preset.id}'")
    url = f"{host.rstrip('/')}/v1/{account_id}/{gateway_id}/{route.slug}"
    return f"{url}/{route.path}" if route.path else url
