"""Settings: flags > environment (and .env) > YAML file > defaults, zero-config OpenAI-compatible env, bad configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from anygate.errors import ConfigError
from anygate.models import Target
from anygate.registry import ProviderRegistry
from anygate.settings import Settings, load_settings, read_environment
from anygate.transport.aiohttp_transport import AiohttpTransport


def write_config(text: str, name: str = "anygate.yaml") -> Path:
    path = Path.cwd() / name
    path.write_text(text, encoding="utf-8")
    return path


def load(env: dict[str, str] | None = None, **flags: Any) -> Settings:
    return load_settings(flags, env or {})


def resolve(settings: Settings, model: str) -> list[Target]:
    """Resolve as the gateway would before any discovery has run (every model list unknown)."""
    return ProviderRegistry(settings, AiohttpTransport()).resolve(model)


# ---------------------------------------------------------------------------------------------- basics


def test_defaults() -> None:
    settings = load()
    assert (settings.host, settings.port, settings.workers, settings.log_level) == ("127.0.0.1", 8080, 1, "info")
    assert settings.providers == []
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.max_sse_event_bytes == 8 * 1024 * 1024
    assert settings.admin_key is None and not settings.no_auth


def test_data_dir_follows_xdg_then_home() -> None:
    assert load({"XDG_DATA_HOME": "/xdg"}).data_dir == Path("/xdg/anygate")
    assert load({"HOME": "/home/u"}).data_dir == Path("/home/u/.local/share/anygate")
    assert load({"ANYGATE_DATA_DIR": "/srv/anygate"}).data_dir == Path("/srv/anygate")


@pytest.mark.parametrize(
    ("file", "env", "flag", "port"),
    [
        (None, None, None, 8080),
        (9000, None, None, 9000),
        (9000, "9100", None, 9100),
        (9000, "9100", 9200, 9200),
        (None, "9100", 9200, 9200),
        (9000, None, 9200, 9200),
    ],
)
def test_precedence_flag_over_env_over_file_over_default(
    file: int | None, env: str | None, flag: int | None, port: int
) -> None:
    config = write_config(f"port: {file}\n" if file else "{}\n")
    environ = {"ANYGATE_PORT": env} if env else {}
    assert load(environ, config_file=config, port=flag).port == port


def test_every_anygate_variable_is_read() -> None:
    settings = load(
        {
            "ANYGATE_HOST": "127.0.0.2",
            "ANYGATE_PORT": "9001",
            "ANYGATE_WORKERS": "3",
            "ANYGATE_LOG_LEVEL": "DEBUG",
            "ANYGATE_ADMIN_KEY": "sk-admin",
            "ANYGATE_SECRET_KEY": "secret",
            "ANYGATE_DATABASE_URL": "postgresql://x/y",
            "ANYGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
            "ANYGATE_DATA_DIR": "/tmp/anygate-data",
            "ANYGATE_MAX_SSE_EVENT_BYTES": "65536",
            "ANYGATE_REMEMBERED_PROMPT_BYTES": "1048576",
        }
    )
    assert (settings.max_sse_event_bytes, settings.remembered_prompt_bytes) == (65536, 1048576)
    assert (settings.host, settings.port, settings.workers, settings.log_level) == ("127.0.0.2", 9001, 3, "debug")
    assert settings.admin_key is not None and settings.admin_key.get_secret_value() == "sk-admin"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "secret"
    assert (settings.database_url, settings.redis_url) == ("postgresql://x/y", "redis://127.0.0.1:6379/0")
    assert settings.resolved_database_url == "postgresql://x/y"


def test_config_file_named_by_the_environment() -> None:
    config = write_config("port: 9300\n")
    settings = load({"ANYGATE_CONFIG": str(config)})
    assert (settings.port, settings.config_file) == (9300, config)


def test_config_file_expands_variables() -> None:
    config = write_config(
        """
providers:
  - id: campus
    type: custom
    base_url: ${CAMPUS_URL}
    api_key: ${CAMPUS_KEY}
    headers: {X-Tenant: "${TENANT:-cs}"}
aliases: {fast: "campus/${MODEL:-llama}"}
"""
    )
    settings = load({"CAMPUS_URL": "https://llm.example.edu/v1", "CAMPUS_KEY": "sk-campus"}, config_file=config)
    [campus] = settings.providers
    assert campus.base_url == "https://llm.example.edu/v1"
    assert settings.provider_key(campus) == "sk-campus"
    assert campus.headers == {"X-Tenant": "cs"}
    assert settings.aliases == {"fast": "campus/llama"}


def test_config_file_example_from_the_contract() -> None:
    config = write_config(
        """
providers:
  - id: groq
  - id: campus
    type: custom
    base_url: https://llm.example.edu/v1
    api_key: ${CAMPUS_KEY}
    headers: {X-Tenant: cs}
    auth: bearer
    models: [llama-3.1-70b]
    allow_private_network: false
    quota: {path: /quota, format: neutral}
aliases: {fast: groq/llama-3.1-8b-instant}
fallbacks: {gpt-4o: [openrouter/openai/gpt-4o, together/meta-llama/Llama-3.3-70B-Instruct-Turbo]}
default_provider: campus
"""
    )
    settings = load({"GROQ_API_KEY": "gsk-1", "CAMPUS_KEY": "ck"}, config_file=config)
    groq, campus = settings.providers
    assert (groq.type, groq.name, groq.base_url) == ("groq", "Groq", "https://api.groq.com/openai/v1")
    assert settings.provider_key(groq) == "gsk-1"
    assert (campus.type, campus.models, campus.default_model) == ("custom", ["llama-3.1-70b"], None)
    assert settings.default_provider == "campus"
    assert settings.fallbacks["gpt-4o"][0] == "openrouter/openai/gpt-4o"


@pytest.mark.parametrize(
    ("provider_id", "variable"),
    [("my-gateway", "MY_GATEWAY_API_KEY"), ("groq", "GROQ_API_KEY"), ("a_b-c", "A_B_C_API_KEY")],
)
def test_provider_key_from_id_api_key(provider_id: str, variable: str) -> None:
    config = write_config(f"providers:\n  - id: {provider_id}\n    type: custom\n    base_url: https://x.example/v1\n")
    settings = load({variable: "sk-from-env"}, config_file=config)
    assert settings.provider_key(settings.providers[0]) == "sk-from-env"


def test_a_key_in_the_file_wins_over_id_api_key() -> None:
    config = write_config("providers:\n  - id: groq\n    api_key: in-file\n")
    settings = load({"GROQ_API_KEY": "in-env"}, config_file=config)
    assert settings.provider_key(settings.providers[0]) == "in-file"


# ------------------------------------------------------------------------------------------ bad config


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("colour: blue\n", "colour", "unknown field"),
        ("providers:\n  - id: groq\n    colour: blue\n", "providers.0.colour", "unknown field"),
        ("port: lots\n", "port", "integer"),
        ("workers: 0\n", "workers", "greater than or equal to 1"),
        ("providers:\n  - id: x\n    type: nope\n", "providers.0.type", "unknown provider type 'nope'"),
        ("providers:\n  - id: x\n    type: custom\n    base_url: ftp://x\n", "providers.0.base_url", "http"),
        ("providers:\n  - id: x\n    type: custom\n    base_url: 'http://'\n", "providers.0.base_url", "no host"),
        ("providers:\n  - id: x\n    type: custom\n", "providers.0", "base_url is required"),
        (
            "providers:\n  - id: x\n    type: custom\n    base_url: http://127.0.0.1:8000/v1\n",
            "providers.0",
            "set allow_private_network",
        ),
        (
            "providers:\n  - id: x\n    type: custom\n    base_url: http://169.254.169.254/v1\n"
            "    allow_private_network: true\n",
            "providers.0",
            "never allowed",
        ),
        ("providers:\n  - id: Bad Id\n", "providers.0.id", "pattern"),
        ("providers:\n  - id: groq\n    timeout: soon\n", "providers.0.timeout", "number"),
        ("providers:\n  - id: groq\n    auth: magic\n", "providers.0.auth", "bearer"),
        ("providers:\n  - id: groq\n  - id: groq\n", "", "duplicate provider id(s): groq"),
        ("default_provider: nobody\n", "", "default_provider 'nobody'"),
        ("log_level: loud\n", "log_level", "debug"),
    ],
)
def test_a_bad_config_file_names_the_field_and_the_file(text: str, field: str, problem: str) -> None:
    config = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load(config_file=config)
    message = str(caught.value)
    assert str(config) in message
    assert field in message
    assert problem in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [("port: [1\n", "not valid YAML"), ("- a\n- b\n", "must be a mapping")],
)
def test_a_config_file_that_is_not_a_mapping(text: str, problem: str) -> None:
    config = write_config(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load(config_file=config)
    assert str(config) in str(caught.value)


def test_a_missing_config_file_is_named() -> None:
    with pytest.raises(ConfigError, match="missing.yaml"):
        load(config_file=Path("missing.yaml"))


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"ANYGATE_PORT": "eighty"})
    assert "port" in str(caught.value)
    assert "ANYGATE_PORT" in str(caught.value)


def test_a_bad_value_from_the_environment_or_a_flag_is_not_blamed_on_the_file() -> None:
    config = write_config("port: 9000\nworkers: 2\n")
    with pytest.raises(ConfigError) as caught:
        load({"ANYGATE_PORT": "eighty"}, config_file=config, workers=0)
    message = str(caught.value)
    assert "port: " in message and "(from environment variable ANYGATE_PORT)" in message
    assert "workers: " in message and "(from --workers)" in message
    with pytest.raises(ConfigError) as from_file:
        load(config_file=write_config("port: eighty\n"))
    assert "(from" not in str(from_file.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_CUSTOM_HEADERS": "{not json"}, "CUSTOM_HEADERS"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_CUSTOM_HEADERS": '["a"]'}, "CUSTOM_HEADERS"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_CUSTOM_HEADERS": '{"a": 1}'}, "CUSTOM_HEADERS"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_TIMEOUT": "soon"}, "OPENAI_COMPATIBLE_TIMEOUT"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_ENABLED": "maybe"}, "OPENAI_COMPATIBLE_ENABLED"),
        ({"OLLAMA_ENABLED": "perhaps"}, "OLLAMA_ENABLED"),
        ({"OPENAI_COMPATIBLE_BASE_URL": "not a url"}, "base_url"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "PREFERRED_PROVIDER": "groq"}, "PREFERRED_PROVIDER"),
    ],
)
def test_a_bad_zero_config_environment_is_one_clear_message(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert variable in str(caught.value)
    assert "environment" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_TIMEOUT": "-3"}, "OPENAI_COMPATIBLE_TIMEOUT"),
        ({"OPENAI_COMPATIBLE_BASE_URL": "ftp://example.com/v1"}, "OPENAI_COMPATIBLE_BASE_URL"),
        ({"OPENROUTER_API_KEY": "k", "OPENROUTER_BASE_URL": "gopher://example.com"}, "OPENROUTER_BASE_URL"),
        ({"OLLAMA_ENABLED": "true", "OLLAMA_BASE_URL": "not-a-url"}, "OLLAMA_BASE_URL"),
        ({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_MAX_RETRIES": "2.9"}, "OPENAI_COMPATIBLE_MAX_RETRIES"),
    ],
)
def test_a_bad_zero_config_value_names_the_variable_that_set_it(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env)
    message = str(caught.value)
    assert f"from environment variable {variable})" in message or f"{variable} must be" in message


def test_an_error_in_a_file_provider_names_the_provider() -> None:
    config = write_config("providers:\n  - id: groq\n  - id: campus\n    type: custom\n    timeout: -1\n")
    with pytest.raises(ConfigError) as caught:
        load(config_file=config)
    message = str(caught.value)
    assert "providers.1.timeout" in message and "provider 'campus'" in message
    assert "environment variable" not in message


def test_no_auth_only_on_loopback() -> None:
    assert load(no_auth=True).no_auth
    assert load(no_auth=True, host="localhost").no_auth
    with pytest.raises(ConfigError, match="loopback"):
        load(no_auth=True, host="0.0.0.0")
    with pytest.raises(ConfigError, match="loopback"):
        load({"ANYGATE_HOST": "192.168.1.5", "ANYGATE_NO_AUTH": "true"})


# ------------------------------------------------------------------------------- seed 003: zero config


def test_openai_compatible_variables_define_one_provider() -> None:
    settings = load(
        {
            "OPENAI_COMPATIBLE_API_KEY": "sk-oc",
            "OPENAI_COMPATIBLE_BASE_URL": "https://api.together.xyz/v1/",
            "OPENAI_COMPATIBLE_CUSTOM_HEADERS": '{"X-Title": "course"}',
            "OPENAI_COMPATIBLE_DEFAULT_MODEL": "meta-llama/Llama-3-8b",
            "OPENAI_COMPATIBLE_TIMEOUT": "12.5",
            "OPENAI_COMPATIBLE_MAX_RETRIES": "1",
        }
    )
    [provider] = settings.providers
    assert provider.id == "openai_compatible"
    assert provider.base_url == "https://api.together.xyz/v1"
    assert provider.name == "Together AI"
    assert provider.headers == {"X-Title": "course"}
    assert (provider.default_model, provider.timeout, provider.max_retries) == ("meta-llama/Llama-3-8b", 12.5, 1)
    assert settings.provider_key(provider) == "sk-oc"
    # A bug once: no invented fallback model list
    assert provider.models == []
    assert settings.provider_aliases == {"openrouter": "openai_compatible"}


def test_openai_compatible_defaults_to_openrouter() -> None:
    [provider] = load({"OPENAI_COMPATIBLE_API_KEY": "sk-oc"}).providers
    assert (provider.base_url, provider.name, provider.type) == (
        "https://openrouter.ai/api/v1",
        "OpenRouter",
        "openrouter",
    )
    assert (provider.timeout, provider.max_retries, provider.enabled) == (30.0, 3, True)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.openai.com/v1", "OpenAI"),
        ("https://x.openai.azure.com/", "Azure OpenAI"),
        ("https://llm.example.edu/v1", "OpenAI Compatible"),
    ],
)
def test_openai_compatible_name_detected_from_the_url(url: str, name: str) -> None:
    [provider] = load({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_BASE_URL": url}).providers
    assert provider.name == name


def test_openai_compatible_provider_name_wins_over_detection() -> None:
    env = {"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_PROVIDER_NAME": "Campus"}
    assert load(env).providers[0].name == "Campus"


def test_azure_url_uses_the_api_key_header() -> None:
    env = {"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_BASE_URL": "https://res.openai.azure.com/openai"}
    assert load(env).providers[0].auth == "api-key"


def test_openai_compatible_can_be_disabled() -> None:
    assert load({"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_ENABLED": "false"}).providers == []


def test_legacy_openrouter_variables() -> None:
    settings = load({"OPENROUTER_API_KEY": "sk-or", "OPENROUTER_BASE_URL": "https://openrouter.ai/api/v1"})
    [provider] = settings.providers
    assert (provider.id, provider.name) == ("openrouter", "OpenRouter")
    assert settings.provider_key(provider) == "sk-or"
    assert settings.provider_aliases == {"openai_compatible": "openrouter"}


def test_new_names_win_over_legacy_names() -> None:
    settings = load({"OPENAI_COMPATIBLE_API_KEY": "new", "OPENROUTER_API_KEY": "old"})
    [provider] = settings.providers
    assert provider.id == "openai_compatible"
    assert settings.provider_key(provider) == "new"


@pytest.mark.parametrize(
    ("env", "provider_id"),
    [
        ({"OPENAI_COMPATIBLE_API_KEY": "k"}, "openai_compatible"),
        ({"OPENROUTER_API_KEY": "k"}, "openrouter"),
    ],
)
@pytest.mark.parametrize("prefix", ["openrouter:", "openrouter/", "openai_compatible:", "openai_compatible/"])
def test_both_prefixes_reach_the_env_provider(env: dict[str, str], provider_id: str, prefix: str) -> None:
    # A bug once: openrouter:<model> failing under the new env names
    settings = load(env)
    assert resolve(settings, prefix + "anthropic/claude-3.5-sonnet") == [
        Target(provider_id, "anthropic/claude-3.5-sonnet")
    ]


@pytest.mark.parametrize("preferred", ["openrouter", "openai_compatible", "OpenRouter", "auto", ""])
@pytest.mark.parametrize(
    ("env", "provider_id"),
    [({"OPENAI_COMPATIBLE_API_KEY": "k"}, "openai_compatible"), ({"OPENROUTER_API_KEY": "k"}, "openrouter")],
)
def test_preferred_provider_names_the_env_provider_whichever_id_it_has(
    preferred: str, env: dict[str, str], provider_id: str
) -> None:
    # A bug once: PREFERRED_PROVIDER=openrouter never matching
    settings = load({**env, "PREFERRED_PROVIDER": preferred})
    assert settings.default_provider == provider_id
    assert resolve(settings, "some/model") == [Target(provider_id, "some/model")]


def test_ollama_variables() -> None:
    settings = load({"OLLAMA_ENABLED": "true", "OLLAMA_BASE_URL": "http://gpu-box:11434/"})
    [ollama] = settings.providers
    assert (ollama.id, ollama.type, ollama.base_url) == ("ollama", "ollama", "http://gpu-box:11434/v1")
    assert (ollama.auth, ollama.allow_private_network) == ("none", True)
    assert load({"OLLAMA_ENABLED": "1"}).providers[0].base_url == "http://localhost:11434/v1"
    assert load({"OLLAMA_BASE_URL": "http://gpu-box:11434"}).providers == []  # disabled by default


def test_llama2_latest_goes_to_ollama_not_to_a_provider_named_llama2() -> None:
    # A bug once: llama2:latest read as provider llama2
    settings = load({"OLLAMA_ENABLED": "true", "PREFERRED_PROVIDER": "ollama", "OPENROUTER_API_KEY": "k"})
    assert settings.default_provider == "ollama"
    assert resolve(settings, "llama2:latest") == [Target("ollama", "llama2:latest")]
    assert resolve(settings, "ollama:llama2:latest") == [Target("ollama", "llama2:latest")]


def test_preferred_provider_auto_is_the_first_configured() -> None:
    settings = load({"OLLAMA_ENABLED": "true", "OPENROUTER_API_KEY": "k", "PREFERRED_PROVIDER": "auto"})
    assert settings.default_provider == settings.providers[0].id


def test_preferred_provider_also_applies_with_a_config_file() -> None:
    config = write_config("providers:\n  - id: groq\n  - id: together\n")
    assert load({"PREFERRED_PROVIDER": "together"}, config_file=config).default_provider == "together"


def test_zero_config_applies_only_without_a_config_file() -> None:
    config = write_config("providers:\n  - id: groq\n")
    settings = load({"OPENAI_COMPATIBLE_API_KEY": "k"}, config_file=config)
    assert [p.id for p in settings.providers] == ["groq"]


# ------------------------------------------------------------------------------------------------ .env


def test_dotenv_is_read_and_the_process_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(
        "OPENAI_COMPATIBLE_API_KEY=from-dotenv\nOPENAI_COMPATIBLE_BASE_URL=https://api.groq.com/openai/v1\n"
        "ANYGATE_PORT=9400\n"
    )
    monkeypatch.setenv("ANYGATE_PORT", "9500")
    env = read_environment()
    assert env["OPENAI_COMPATIBLE_API_KEY"] == "from-dotenv"
    assert env["ANYGATE_PORT"] == "9500"
    settings = load_settings({})
    [provider] = settings.providers
    assert (provider.name, settings.port) == ("Groq", 9500)
    assert settings.provider_key(provider) == "from-dotenv"


def test_dotenv_supplies_provider_keys_and_config_variables() -> None:
    Path(".env").write_text("GROQ_API_KEY=gsk-dotenv\nTENANT=physics\n")
    config = write_config("providers:\n  - id: groq\n    headers: {X-Tenant: '${TENANT}'}\n")
    settings = load_settings({"config_file": config})
    [groq] = settings.providers
    assert settings.provider_key(groq) == "gsk-dotenv"
    assert groq.headers == {"X-Tenant": "physics"}


def test_the_environment_fixture_leaves_nothing_behind() -> None:
    assert not [name for name in os.environ if name.startswith(("ANYGATE_", "OPENAI_", "OPENROUTER_"))]
    assert not Path(".env").exists()


def test_a_base_url_without_a_key_defines_a_keyless_provider() -> None:
    settings = load_settings(environ={"OPENAI_COMPATIBLE_BASE_URL": "http://127.0.0.1:8000/v1"})
    (provider,) = settings.providers
    assert provider.id == "openai_compatible"
    assert provider.auth == "none"


# ------------------------------------------------------------------------------------- provider headers

REFUSED_HEADERS = [
    ("Host", "secret.example"),
    ("content-length", "0"),
    ("Transfer-Encoding", "chunked"),
    ("Connection", "close"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Authorization", "Basic secret"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "websocket"),
    ("Expect", "100-continue"),
    ("X Tenant", "cs"),  # not a token
    ("X-Tenant:", "cs"),
    ("X-Tenant", "secret\r\nX-Injected: 1"),
    ("X-Tenant", "secret\n"),
    ("X-Tenant", "secret\x00"),
]


@pytest.mark.parametrize(("name", "value"), REFUSED_HEADERS)
def test_a_provider_header_that_frames_or_splits_requests_is_refused_at_load(name: str, value: str) -> None:
    import yaml

    provider = {"id": "campus", "type": "custom", "base_url": "https://llm.example.edu/v1", "headers": {name: value}}
    config = write_config(yaml.safe_dump({"providers": [{"id": "groq"}, provider]}))
    with pytest.raises(ConfigError) as caught:
        load(config_file=config)
    message = str(caught.value)
    assert "providers.1.headers" in message and "(provider 'campus')" in message
    assert f"header {name if ' ' not in name and ':' not in name else repr(name)}:" in message
    assert "secret" not in message  # never the value: it may be a credential


def test_custom_headers_from_the_environment_are_checked_too() -> None:
    env = {"OPENAI_COMPATIBLE_API_KEY": "sk-x", "OPENAI_COMPATIBLE_CUSTOM_HEADERS": '{"Host": "evil.example"}'}
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert "header Host" in str(caught.value) and "OPENAI_COMPATIBLE_CUSTOM_HEADERS" in str(caught.value)


@pytest.mark.parametrize(
    "provider",
    [
        {"api_key": "sk-abc\r\n"},
        {"api_keys": ["sk-ok", "sk-\nbad"]},
        {"via": {"cloudflare": {"account_id": "a", "gateway_id": "g", "token": "t\r\nX: y"}}},
    ],
)
def test_a_key_with_a_line_break_is_refused_at_load(provider: dict[str, Any]) -> None:
    import yaml

    config = write_config(yaml.safe_dump({"providers": [{"id": "openai", **provider}]}))
    with pytest.raises(ConfigError, match="control character"):
        load(config_file=config)


def test_ordinary_custom_headers_pass() -> None:
    headers = {"X-Tenant": "cs", "OpenAI-Organization": "org-1", "X-Title": "tab\tand ünïcode"}
    provider = {"id": "campus", "type": "custom", "base_url": "https://llm.example.edu/v1", "headers": headers}
    assert Settings.model_validate({"providers": [provider]}).providers[0].headers == headers


# ------------------------------------------------------------------------------------- request limits


def test_request_limits_come_from_the_file_and_the_environment_field_by_field() -> None:
    config = write_config("request_limits: {max_headers: 50, header_timeout: 3}\n")
    env = {
        "ANYGATE_HEADER_TIMEOUT": "5",
        "ANYGATE_BODY_TIMEOUT": "120",
        "ANYGATE_BODY_MIN_RATE": "2000",
        "ANYGATE_MAX_HEADER_BYTES": "32768",
    }
    limits = load(env, config_file=config).request_limits
    assert (limits.header_timeout, limits.body_timeout, limits.body_min_rate) == (5, 120, 2000)
    assert (limits.max_header_bytes, limits.max_headers) == (32768, 50)
    assert load({"ANYGATE_MAX_HEADERS": "20"}).request_limits.max_headers == 20
    defaults = load().request_limits
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_header_bytes, defaults.max_headers) == (
        10,
        60,
        65536,
        100,
    )


def test_a_bad_request_limit_from_the_environment_names_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"ANYGATE_HEADER_TIMEOUT": "soon"})
    assert "request_limits.header_timeout" in str(caught.value)
    assert "(from environment variable ANYGATE_HEADER_TIMEOUT)" in str(caught.value)


# -------------------------------------------------------------------- seed 003: model list and log level


def test_openai_compatible_models_is_a_comma_separated_list_for_the_env_provider() -> None:
    [provider] = load(
        {"OPENAI_COMPATIBLE_API_KEY": "k", "OPENAI_COMPATIBLE_MODELS": " llama-3, qwen-2,,llama-3 "}
    ).providers
    assert provider.models == ["llama-3", "qwen-2"]


def test_openai_compatible_models_serve_when_discovery_fails() -> None:
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.gateway import ADMIN_KEY
    from tests.support.inprocess import inprocess_gateway

    up = FakeUpstream(has_models_endpoint=False).in_memory()
    env = {
        "OPENAI_COMPATIBLE_BASE_URL": up.base_url,
        "OPENAI_COMPATIBLE_API_KEY": "sk-env",
        "OPENAI_COMPATIBLE_MODELS": "llama-3,qwen-2",
        "ANYGATE_ADMIN_KEY": ADMIN_KEY,
        "ANYGATE_DATA_DIR": str(Path.cwd() / "data"),
    }
    with inprocess_gateway(load(env), up) as gw, gw.client() as http:
        listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert listed == ["openai_compatible/llama-3", "openai_compatible/qwen-2"]
        reply = http.post(
            "/v1/chat/completions", json={"model": "qwen-2", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert reply.status_code == 200, reply.text
        assert up.requests_to("/v1/chat/completions")[-1].model == "qwen-2"
        assert http.post("/v1/chat/completions", json={"model": "other", "messages": []}).status_code == 404


@pytest.mark.parametrize(
    ("env", "level"),
    [
        ({"LOG_LEVEL": "DEBUG"}, "debug"),
        ({"LOG_LEVEL": "warn"}, "warning"),
        ({"LOG_LEVEL": "critical"}, "error"),
        ({"LOG_LEVEL": "debug", "ANYGATE_LOG_LEVEL": "error"}, "error"),
        ({"LOG_LEVEL": ""}, "info"),
    ],
)
def test_log_level_is_read_when_anygate_log_level_is_not_set(env: dict[str, str], level: str) -> None:
    assert load(env).log_level == level


def test_a_bad_log_level_names_the_variable_it_came_from() -> None:
    with pytest.raises(ConfigError, match="environment variable LOG_LEVEL"):
        load({"LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="environment variable ANYGATE_LOG_LEVEL"):
        load({"ANYGATE_LOG_LEVEL": "loud", "LOG_LEVEL": "debug"})
