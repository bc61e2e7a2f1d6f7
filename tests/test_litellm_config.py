"""Moving from LiteLLM: a proxy config.yaml becomes anygate's providers, aliases, fallbacks and prices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anygate.litellm_config import convert
from anygate.models import resolve_model
from anygate.registry import ProviderRegistry
from anygate.settings import load_settings
from anygate.transport.aiohttp_transport import AiohttpTransport

SAMPLE = Path(__file__).parent / "fixtures" / "litellm_config.yaml"
ENV = {
    "OPENAI_API_KEY": "sk-openai",
    "OPENROUTER_API_KEY": "sk-or",
    "GROQ_API_KEY": "gsk_1",
    "GROQ_API_KEY_2": "gsk_2",
    "CAMPUS_KEY": "campus",
}


@pytest.fixture
def converted() -> Any:
    return convert(yaml.safe_load(SAMPLE.read_text()))


def providers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in config["providers"]}


def test_each_litellm_provider_becomes_a_preset_or_a_custom_provider(converted: Any) -> None:
    found = providers(converted.config)
    assert found["openai"] == {"id": "openai", "type": "openai", "models": ["gpt-4o"], "api_key": "${OPENAI_API_KEY}"}
    assert found["openrouter"]["models"] == ["openai/gpt-4o"]
    assert found["groq"]["api_key"] == "${GROQ_API_KEY}" and found["groq"]["api_keys"] == ["${GROQ_API_KEY_2}"]
    campus = found["llm-example-edu"]
    assert campus["type"] == "custom" and campus["base_url"] == "https://llm.example.edu/v1"
    assert "allow_private_network" not in campus
    assert found["vllm"] == {
        "id": "vllm",
        "type": "vllm",
        "base_url": "http://vllm:8000/v1",
        "allow_private_network": True,
        "models": ["qwen2.5-coder"],
    }
    assert found["ollama"]["base_url"] == "http://127.0.0.1:11434/v1"


def test_names_become_aliases_fallbacks_and_prices(converted: Any) -> None:
    config = converted.config
    assert config["aliases"]["gpt-4o"] == "openai/gpt-4o"
    assert config["aliases"]["gpt-4"] == "openai/gpt-4o"
    assert config["aliases"]["campus-llama"] == "llm-example-edu/meta-llama/Llama-3.3-70B-Instruct"
    assert config["fallbacks"]["gpt-4o"] == ["openrouter/openai/gpt-4o", "campus-llama"]
    assert config["prices"]["openai/gpt-4o"] == {"input": pytest.approx(2.5), "output": pytest.approx(10.0)}


def test_what_cannot_be_carried_over_is_said(converted: Any) -> None:
    warnings = "\n".join(converted.warnings)
    assert "bedrock" in warnings and "claude-sonnet" in warnings
    assert "rpm not carried over" in warnings
    assert "general_settings" in warnings
    assert "sk-1234" not in warnings


def test_the_result_is_a_configuration_anygate_loads_and_resolves(converted: Any, tmp_path: Path) -> None:
    path = tmp_path / "anygate.yaml"
    path.write_text(yaml.safe_dump(converted.config))
    settings = load_settings({"config_file": str(path)}, environ={**ENV, "XDG_DATA_HOME": str(tmp_path)})
    assert settings.providers[0].api_key is not None
    assert settings.providers[0].api_key.get_secret_value() == "sk-openai"
    registry = ProviderRegistry(settings, AiohttpTransport())
    target = resolve_model("campus-llama", registry.index)[0]
    assert (target.provider_id, target.model) == ("llm-example-edu", "meta-llama/Llama-3.3-70B-Instruct")


def test_a_file_without_a_model_list_is_refused() -> None:
    with pytest.raises(ValueError, match="model_list"):
        convert({"general_settings": {}})


def test_anygate_import_litellm_writes_the_config_and_prints_the_warnings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from anygate.cli import app

    output = tmp_path / "anygate.yaml"
    runner = CliRunner()
    printed = runner.invoke(app, ["import", "litellm", str(SAMPLE)])
    written = runner.invoke(app, ["import", "litellm", str(SAMPLE), "-o", str(output)])
    again = runner.invoke(app, ["import", "litellm", str(SAMPLE), "-o", str(output)])
    not_litellm = tmp_path / "other.yaml"
    not_litellm.write_text("providers: []\n")
    refused = runner.invoke(app, ["import", "litellm", str(not_litellm)])
    assert printed.exit_code == 0 and written.exit_code == 0, written.output
    assert yaml.safe_load(printed.stdout) == convert(yaml.safe_load(SAMPLE.read_text())).config
    assert "anygate: warning: model_list[7] (claude-sonnet): skipped" in printed.stderr
    assert yaml.safe_load(output.read_text()) == yaml.safe_load(printed.stdout)
    assert f"wrote {output}" in written.stderr
    assert again.exit_code == 1 and "exists already" in again.stderr
    assert refused.exit_code == 1 and "not a LiteLLM proxy configuration: it has no model_list" in refused.stderr
    settings = load_settings({"config_file": str(output)}, environ={**ENV, "XDG_DATA_HOME": str(tmp_path)})
    assert {p.id for p in settings.providers} >= {"openai", "groq", "llm-example-edu"}
