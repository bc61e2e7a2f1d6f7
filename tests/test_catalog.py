"""The provider catalog: presets as data, URL joining, name detection, auth styles, Cloudflare AI Gateway."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from anygate.catalog import PRESETS, cloudflare_base_url, detect_provider_name, join_url, key_env_name
from anygate.settings import ProviderConfig
from anygate.upstream import OpenAICompatibleProvider, auth_headers

CONTRACT_PRESETS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "xai": "https://api.x.ai/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "perplexity": "https://api.perplexity.ai",
    "cohere": "https://api.cohere.ai/compatibility/v1",
    "minimax": "https://api.minimax.io/v1",
    "moonshot": "https://api.moonshot.ai/v1",
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "lmstudio": "http://localhost:1234/v1",
    "litellm": "http://localhost:4000/v1",
    "azure": None,
    "custom": None,
}


def test_the_catalog_holds_exactly_the_contract_presets() -> None:
    assert {p.id: p.base_url for p in PRESETS.values()} == CONTRACT_PRESETS


@pytest.mark.parametrize(("preset_id", "base_url"), [(k, v) for k, v in CONTRACT_PRESETS.items() if v])
@pytest.mark.parametrize("endpoint", ["chat/completions", "completions", "embeddings", "models", "/models"])
def test_a_preset_provider_joins_its_base_url_and_endpoint(preset_id: str, base_url: str, endpoint: str) -> None:
    config = ProviderConfig(id=preset_id)
    assert config.base_url == base_url
    client = OpenAICompatibleProvider.from_config(config, api_key="k")
    assert client.url(endpoint) == base_url + "/" + endpoint.lstrip("/")


@pytest.mark.parametrize(
    ("base", "endpoint", "url"),
    [
        ("https://x/v1", "chat/completions", "https://x/v1/chat/completions"),
        ("https://x/v1/", "chat/completions", "https://x/v1/chat/completions"),
        ("https://x/v1", "/chat/completions", "https://x/v1/chat/completions"),
        ("https://x/v1//", "//models", "https://x/v1/models"),
        ("https://api.perplexity.ai", "chat/completions", "https://api.perplexity.ai/chat/completions"),
        (
            "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
            "chat/completions",
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
        ("https://x/v1/?a=1&b=2", "/models", "https://x/v1/models?a=1&b=2"),
    ],
)
def test_join_url_puts_one_slash_between(base: str, endpoint: str, url: str) -> None:
    assert join_url(base, endpoint) == url


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://openrouter.ai/api/v1", "OpenRouter"),
        ("https://api.openai.com/v1", "OpenAI"),
        ("https://api.together.xyz/v1", "Together AI"),
        ("https://api.together.ai/v1", "Together AI"),
        ("https://my-resource.openai.azure.com/", "Azure OpenAI"),
        ("https://api.groq.com/openai/v1", "Groq"),
        ("https://api.deepseek.com/v1", "DeepSeek"),
        ("https://api.mistral.ai/v1", "Mistral AI"),
        ("https://api.x.ai/v1", "xAI"),
        ("https://api.fireworks.ai/inference/v1", "Fireworks AI"),
        ("https://api.perplexity.ai", "Perplexity"),
        ("https://api.cohere.ai/compatibility/v1", "Cohere"),
        ("https://api.minimax.io/v1", "MiniMax"),
        ("https://api.moonshot.ai/v1", "Moonshot AI"),
        ("https://llm.example.edu/v1", "OpenAI Compatible"),
        ("http://localhost:11434/v1", "OpenAI Compatible"),
        ("https://notopenrouter.ai.example.com/v1", "OpenAI Compatible"),
        ("https://evil-x.ai/v1", "OpenAI Compatible"),
    ],
)
def test_provider_name_detection(url: str, name: str) -> None:
    assert detect_provider_name(url) == name


@pytest.mark.parametrize(
    ("provider_id", "env"),
    [
        ("groq", "GROQ_API_KEY"),
        ("my-gateway", "MY_GATEWAY_API_KEY"),
        ("openai_compatible", "OPENAI_COMPATIBLE_API_KEY"),
        ("a--b__c", "A_B_C_API_KEY"),
        ("x1", "X1_API_KEY"),
    ],
)
def test_key_environment_variable_names(provider_id: str, env: str) -> None:
    assert key_env_name(provider_id) == env


@given(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True))
def test_key_environment_variable_names_are_valid_shell_names(provider_id: str) -> None:
    name = key_env_name(provider_id)
    assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]*_API_KEY", name)
    assert "__" not in name.removesuffix("_API_KEY")


@given(
    base=st.from_regex(r"https://[a-z]{1,10}\.example(/[a-z0-9]{1,5}){0,3}/{0,2}", fullmatch=True),
    endpoint=st.from_regex(r"/{0,2}[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True),
)
def test_join_url_never_doubles_or_drops_the_slash(base: str, endpoint: str) -> None:
    joined = join_url(base, endpoint)
    assert joined == base.rstrip("/") + "/" + endpoint.lstrip("/")
    assert "//" not in joined.removeprefix("https://")


@pytest.mark.parametrize(
    ("auth", "key", "headers"),
    [
        ("bearer", "sk-1", {"Authorization": "Bearer sk-1"}),
        ("api-key", "sk-1", {"api-key": "sk-1"}),
        ("x-api-key", "sk-ant-1", {"x-api-key": "sk-ant-1"}),
        ("none", "sk-1", {}),
        ("bearer", None, {}),
        ("bearer", "", {}),
    ],
)
def test_auth_styles(auth: str, key: str | None, headers: dict[str, str]) -> None:
    assert auth_headers(auth, key) == headers  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("preset_id", "auth", "keyless", "private"),
    [
        ("openai", "bearer", False, False),
        ("azure", "api-key", False, False),
        ("anthropic", "x-api-key", False, False),
        ("ollama", "none", True, True),
        ("vllm", "none", True, True),
        ("lmstudio", "none", True, True),
        ("litellm", "bearer", False, True),
        ("custom", "bearer", False, False),
    ],
)
def test_preset_defaults_reach_the_provider(preset_id: str, auth: str, keyless: bool, private: bool) -> None:
    base = {} if PRESETS[preset_id].base_url else {"base_url": "https://llm.example.com/v1"}
    config = ProviderConfig(id="p", type=preset_id, **base)
    assert (config.auth, config.allow_private_network) == (auth, private)
    assert OpenAICompatibleProvider.from_config(config, None).is_configured is keyless


def test_quota_and_static_model_presets() -> None:
    openrouter = ProviderConfig(id="openrouter")
    assert openrouter.quota is not None and (openrouter.quota.path, openrouter.quota.format) == ("/key", "openrouter")
    litellm = ProviderConfig(id="litellm")
    assert litellm.quota is not None and (litellm.quota.path, litellm.quota.format) == ("/key/info", "litellm")
    perplexity = ProviderConfig(id="perplexity")
    assert perplexity.models and "sonar" in perplexity.models
    assert not PRESETS["perplexity"].has_models_endpoint


def test_custom_provider_assumes_nothing() -> None:
    config = ProviderConfig(id="campus", type="custom", base_url="https://llm.example.edu/v1")
    assert (config.name, config.auth, config.models, config.quota) == ("OpenAI Compatible", "bearer", [], None)
    assert config.allow_private_network is False


@pytest.mark.parametrize("preset_id", ["azure", "custom"])
def test_presets_without_a_base_url_require_one(preset_id: str) -> None:
    with pytest.raises(ValidationError, match="base_url is required"):
        ProviderConfig(id="p", type=preset_id)


def test_the_anthropic_preset_speaks_the_messages_api_with_its_own_key_header_and_version() -> None:
    config = ProviderConfig(id="anthropic")
    assert (config.api, config.auth, config.name) == ("anthropic", "x-api-key", "Anthropic")
    client = OpenAICompatibleProvider.from_config(config, "sk-ant-secret")
    assert client.headers == {"x-api-key": "sk-ant-secret"}
    assert client.default_headers == {"anthropic-version": "2023-06-01"}
    assert ProviderConfig(id="campus", base_url="https://llm.example.edu/v1").api == "openai"
    assert ProviderConfig(id="campus", base_url="https://llm.example.edu/v1", api="anthropic").api == "anthropic"


def test_custom_headers_and_auth_reach_the_client() -> None:
    config = ProviderConfig(
        id="campus", type="custom", base_url="https://llm.example.edu/v1", headers={"X-Tenant": "cs"}, auth="api-key"
    )
    client = OpenAICompatibleProvider.from_config(config, "secret")
    assert client.headers == {"X-Tenant": "cs", "api-key": "secret"}


# ------------------------------------------------------------------------------ Cloudflare AI Gateway

CF = "https://gateway.ai.cloudflare.com/v1/acct/gw"


@pytest.mark.parametrize(
    ("preset_id", "url"),
    [
        ("openai", f"{CF}/openai"),
        ("openrouter", f"{CF}/openrouter"),
        ("groq", f"{CF}/groq"),
        ("deepseek", f"{CF}/deepseek"),
        ("perplexity", f"{CF}/perplexity-ai"),
        ("xai", f"{CF}/grok/v1"),
        ("mistral", f"{CF}/mistral/v1"),
        ("cohere", f"{CF}/cohere/compatibility/v1"),
        ("anthropic", f"{CF}/anthropic/v1"),
    ],
)
def test_cloudflare_urls_use_cloudflare_slugs_and_paths(preset_id: str, url: str) -> None:
    assert cloudflare_base_url(PRESETS[preset_id], "acct", "gw") == url


@pytest.mark.parametrize(
    "preset_id", ["fireworks", "together", "minimax", "moonshot", "azure", "ollama", "custom", "litellm"]
)
def test_cloudflare_refuses_providers_it_does_not_front(preset_id: str) -> None:
    with pytest.raises(ValueError, match="does not front"):
        cloudflare_base_url(PRESETS[preset_id], "acct", "gw")


def test_a_provider_via_cloudflare_gets_the_gateway_url_and_its_token_header() -> None:
    config = ProviderConfig.model_validate(
        {"id": "xai", "via": {"cloudflare": {"account_id": "acct", "gateway_id": "gw", "token": "cf-token"}}}
    )
    assert config.base_url == f"{CF}/grok/v1"
    assert config.headers["cf-aig-authorization"] == "Bearer cf-token"
    client = OpenAICompatibleProvider.from_config(config, "xai-key")
    assert client.url("chat/completions") == f"{CF}/grok/v1/chat/completions"
    assert client.headers["Authorization"] == "Bearer xai-key"


def test_a_provider_cloudflare_does_not_front_is_refused_when_configured() -> None:
    with pytest.raises(ValidationError, match="does not front"):
        ProviderConfig.model_validate(
            {"id": "fireworks", "via": {"cloudflare": {"account_id": "a", "gateway_id": "b"}}}
        )


def test_secrets_stay_out_of_the_config_repr() -> None:
    config = ProviderConfig.model_validate(
        {
            "id": "xai",
            "api_key": "xai-secret",
            "headers": {"api-key": "header-secret"},
            "via": {"cloudflare": {"account_id": "acct", "gateway_id": "gw", "token": "cf-secret"}},
        }
    )
    text = repr(config) + str(config)
    for secret in ("xai-secret", "header-secret", "cf-secret"):
        assert secret not in text
