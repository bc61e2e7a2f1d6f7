"""Moving from LiteLLM: its proxy ``config.yaml`` model list as anygate providers, aliases and fallbacks.

``convert(litellm_config)`` is pure: it returns anygate's configuration (the YAML file's shape) and a
list of warnings, one line each, for what it could not carry over or carried over differently:

- each ``litellm_params.model`` of the form ``<provider>/<model>`` becomes a model of an anygate
  provider: the preset LiteLLM's provider name stands for, or a ``custom`` provider when an ``api_base``
  points elsewhere (one provider per distinct base URL); a second key for the same provider becomes
  one of its ``api_keys`` (anygate balances over them);
- ``api_key: os.environ/NAME`` becomes ``${NAME}`` (expanded from the environment at start);
- ``model_name`` becomes an alias of ``provider/model``; more deployments under the same name become
  its fallbacks (anygate balances over providers that list the same model, not over an alias);
- ``litellm_settings.fallbacks`` and ``router_settings.model_group_alias`` carry over;
- ``input_cost_per_token``/``output_cost_per_token`` become ``prices:`` (USD per million tokens).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from anygate.catalog import PRESETS

# LiteLLM's provider names (the prefix of ``litellm_params.model``) and the preset each stands for.
PROVIDER_PRESETS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "openrouter": "openrouter",
    "together_ai": "together",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "xai": "xai",
    "fireworks_ai": "fireworks",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "minimax": "minimax",
    "moonshot": "moonshot",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "hosted_vllm": "vllm",
    "vllm": "vllm",
    "lm_studio": "lmstudio",
    "litellm_proxy": "litellm",
    "azure": "azure",
    "anthropic": "anthropic",
}
ENV_REFERENCE = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
MILLION = 1_000_000


@dataclass
class Conversion:
    """anygate's configuration (as the YAML file holds it) and what could not be carried over as it was."""

    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Provider:
    spec: dict[str, Any]
    keys: list[str] = field(default_factory=list)


class _Converter:
    def __init__(self) -> None:
        self.providers: dict[str, _Provider] = {}
        self.by_origin: dict[tuple[str, str], str] = {}  # (preset, base URL) -> provider id
        self.aliases: dict[str, str] = {}
        self.fallbacks: dict[str, list[str]] = {}
        self.prices: dict[str, dict[str, float]] = {}
        self.warnings: list[str] = []

    def add_deployment(self, index: int, entry: Any) -> None:
        where = f"model_list[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            self.warnings.append(f"{where}: skipped (no litellm_params)")
            return
        name, params = entry.get("model_name"), entry["litellm_params"]
        model = params.get("model")
        if not isinstance(name, str) or not isinstance(model, str) or "/" not in model:
            self.warnings.append(f"{where}: skipped (model_name and a '<provider>/<model>' model are needed)")
            return
        prefix, upstream_model = model.split("/", 1)
        preset = PROVIDER_PRESETS.get(prefix)
        if preset is None or preset not in PRESETS:
            self.warnings.append(f"{where} ({name}): skipped, LiteLLM provider '{prefix}' has no anygate preset")
            return
        provider_id = self.provider_for(where, preset, params)
        if provider_id is None:
            return
        target = f"{provider_id}/{upstream_model}"
        models: list[str] = self.providers[provider_id].spec.setdefault("models", [])
        if upstream_model not in models:
            models.append(upstream_model)
        self.add_name(name, target)
        self.add_price(target, params, entry.get("model_info"))
        ignored = sorted(k for k in ("rpm", "tpm", "max_parallel_requests") if k in params)
        if ignored:
            self.warnings.append(f"{where} ({name}): {', '.join(ignored)} not carried over (set limits on keys)")

    def provider_for(self, where: str, preset: str, params: dict[str, Any]) -> str | None:
        base_url = params.get("api_base") if isinstance(params.get("api_base"), str) else None
        default = PRESETS[preset].base_url
        if preset == "azure" and base_url:
            base_url = base_url.rstrip("/") + "/openai/v1"
        if base_url is None and default is None:
            self.warnings.append(f"{where}: skipped, a {preset} provider needs an api_base")
            return None
        if (
            preset in ("ollama", "vllm", "lmstudio", "litellm")
            and base_url
            and not base_url.rstrip("/").endswith("/v1")
        ):
            base_url = base_url.rstrip("/") + "/v1"
        custom = base_url is not None and base_url.rstrip("/") != (default or "").rstrip("/")
        origin = (preset, (base_url or default or "").rstrip("/"))
        provider_id = self.by_origin.get(origin)
        if provider_id is None:
            provider_id = self.new_provider(preset, base_url if custom else None)
            self.by_origin[origin] = provider_id
        self.add_key(where, provider_id, params.get("api_key"))
        return provider_id

    def new_provider(self, preset: str, base_url: str | None) -> str:
        if base_url is None or preset not in ("openai", "custom"):
            spec: dict[str, Any] = {"id": self.unique_id(preset), "type": preset}
            if base_url is not None:
                spec["base_url"] = base_url
        else:
            host = urlsplit(base_url).hostname or "custom"
            spec = {"id": self.unique_id(slug(host)), "type": "custom", "base_url": base_url}
        if base_url is not None and is_private(base_url):
            spec["allow_private_network"] = True
        self.providers[spec["id"]] = _Provider(spec)
        return str(spec["id"])

    def unique_id(self, wanted: str) -> str:
        candidate, number = wanted, 2
        while candidate in self.providers:
            candidate, number = f"{wanted}-{number}", number + 1
        return candidate

    def add_key(self, where: str, provider_id: str, raw: Any) -> None:
        if raw is None or raw in ("", "none", "None"):
            return
        key = str(raw)
        match = ENV_REFERENCE.match(key)
        if match is not None:
            key = "${" + match.group(1) + "}"
        else:
            self.warnings.append(f"{where}: an API key written in the file was carried over; prefer os.environ/NAME")
        provider = self.providers[provider_id]
        if key not in provider.keys:
            provider.keys.append(key)

    def add_name(self, name: str, target: str) -> None:
        if name == target:
            return
        if name not in self.aliases:
            self.aliases[name] = target
        elif self.aliases[name] != target and target not in self.fallbacks.get(name, []):
            self.fallbacks.setdefault(name, []).append(target)
            self.warnings.append(
                f"'{name}' has several deployments: the first is its alias, the others its fallbacks "
                "(anygate balances over providers that list the same model, not over an alias)"
            )

    def add_price(self, target: str, params: dict[str, Any], info: Any) -> None:
        sources = [params, info if isinstance(info, dict) else {}]
        input_cost = next((s["input_cost_per_token"] for s in sources if "input_cost_per_token" in s), None)
        output_cost = next((s["output_cost_per_token"] for s in sources if "output_cost_per_token" in s), None)
        if isinstance(input_cost, int | float) and isinstance(output_cost, int | float):
            self.prices[target] = {"input": input_cost * MILLION, "output": output_cost * MILLION}

    def add_settings(self, config: dict[str, Any]) -> None:
        litellm_settings = config.get("litellm_settings") or {}
        for rule in litellm_settings.get("fallbacks") or []:
            if isinstance(rule, dict):
                for name, chain in rule.items():
                    if isinstance(chain, list):
                        wanted = self.fallbacks.setdefault(str(name), [])
                        wanted.extend(str(c) for c in chain if str(c) not in wanted)
        router_settings = config.get("router_settings") or {}
        for name, target in (router_settings.get("model_group_alias") or {}).items():
            if isinstance(target, str):
                self.aliases.setdefault(str(name), self.aliases.get(target, target))
        for section in ("general_settings", "environment_variables"):
            if config.get(section):
                self.warnings.append(f"{section}: not carried over (see docs/configuration.md for anygate's settings)")

    def result(self) -> dict[str, Any]:
        providers = []
        for provider in self.providers.values():
            spec = dict(provider.spec)
            if provider.keys:
                spec["api_key"] = provider.keys[0]
                if provider.keys[1:]:
                    spec["api_keys"] = provider.keys[1:]
            providers.append(spec)
        config: dict[str, Any] = {"providers": providers}
        if self.aliases:
            config["aliases"] = self.aliases
        if self.fallbacks:
            config["fallbacks"] = self.fallbacks
        if self.prices:
            config["prices"] = self.prices
        return config


def convert(litellm_config: Any) -> Conversion:
    """anygate's configuration for a LiteLLM proxy configuration (its parsed YAML)."""
    if not isinstance(litellm_config, dict) or not isinstance(litellm_config.get("model_list"), list):
        raise ValueError("not a LiteLLM proxy configuration: it has no model_list")
    converter = _Converter()
    for index, entry in enumerate(litellm_config["model_list"]):
        converter.add_deployment(index, entry)
    converter.add_settings(litellm_config)
    return Conversion(converter.result(), converter.warnings)


def slug(text: str) -> str:
    """A provider id from a host name: ``llm.example.edu`` -> ``llm-example-edu``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63] or "custom"


def is_private(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost") or "." not in host:
        return True  # a bare name (a compose service, say) lives on a private network
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False
