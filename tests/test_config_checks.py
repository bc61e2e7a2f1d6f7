"""Configuration mistakes found at start: an empty ``${VAR}``, a provider without a key it needs, an alias or
fallback naming a model no provider lists. Each is said once, in plain words."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from anygate.config_checks import routing_warnings, static_warnings
from anygate.models import ModelIndex
from anygate.settings import load_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway


def write_config(text: str) -> Path:
    path = Path.cwd() / "anygate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_variable_in_the_config_file_is_named_with_where_it_is_used() -> None:
    config = write_config(
        "providers:\n"
        "  - id: campus\n    type: custom\n    base_url: https://llm.example.edu/v1\n    api_key: ${CAMPUS_KEY}\n"
        "    headers: {X-Tenant: '${TENANT:-cs}', X-Team: '${TEAM}'}\n"
    )
    settings = load_settings({"config_file": config}, {"TEAM": ""})
    warnings = static_warnings(settings)
    assert f"{config}: providers.0.api_key uses ${{CAMPUS_KEY}}, which is not set (it was read as empty)" in warnings
    assert any("providers.0.headers.X-Team uses ${TEAM}" in w for w in warnings)
    assert not any("TENANT" in w for w in warnings)  # a default was given: nothing to say


def test_a_provider_that_needs_a_key_and_has_none_is_named_with_where_to_put_it() -> None:
    config = write_config(
        "providers:\n  - id: groq\n  - id: ollama\n  - id: my-gateway\n    type: custom\n"
        "    base_url: https://gw.example.com/v1\n  - id: together\n    api_key: tk-123\n"
    )
    warnings = static_warnings(load_settings({"config_file": config}, {"MY_GATEWAY_API_KEY": ""}))
    assert [w.split(":")[0] for w in warnings] == [
        "provider 'groq' has no API key",
        "provider 'my-gateway' has no API key",
    ]
    assert "set GROQ_API_KEY" in warnings[0] and "set MY_GATEWAY_API_KEY" in warnings[1]


def test_a_correct_configuration_has_nothing_to_warn_about() -> None:
    config = write_config("providers:\n  - id: groq\n    api_key: ${GROQ_KEY}\n")
    assert static_warnings(load_settings({"config_file": config}, {"GROQ_KEY": "gsk-1"})) == []


def test_aliases_and_fallbacks_to_models_no_provider_lists() -> None:
    index = ModelIndex.build(
        ["groq", "lab"],
        {"groq": ["llama-3.1-8b-instant", "mixtral"], "lab": None},
        aliases={"fast": "groq/llama-3.1-8b-instant", "typo": "groq/llama-3.1-8b", "gone": "nobody/model"},
    )
    fallbacks = {
        "mixtral": ["groq/llama-3.1-8b-instant", "groq/llama-9"],
        "gpt-5": ["groq/mixtral"],
        "lab/anything": ["groq/mixtral"],
    }
    assert routing_warnings(index, index.aliases, fallbacks) == [
        "alias 'typo' points at 'groq/llama-3.1-8b', but provider 'groq' does not list 'llama-3.1-8b' "
        "(it lists 2 models)",
        "alias 'gone' points at 'nobody/model', but no provider lists 'nobody/model'",
        "fallback 'groq/llama-9' of 'mixtral' is skipped: provider 'groq' does not list 'llama-9' (it lists 2 models)",
        "fallbacks for 'gpt-5' are never tried: no provider lists 'gpt-5', so requests for it are refused first",
    ]  # 'lab' lists nothing known: what it serves is not judged


@pytest.mark.parametrize("discovery", ["works", "fails"])
def test_the_gateway_warns_once_after_its_first_discovery(discovery: str, caplog: pytest.LogCaptureFixture) -> None:
    upstream = FakeUpstream(models=["served"], has_models_endpoint=discovery == "works").in_memory()
    provider = fake_provider(upstream, models=["configured"])
    settings = gateway_settings(
        provider, aliases={"good": "fake/served", "bad": "fake/missing"}, fallbacks={"fake/served": ["fake/gone"]}
    )
    caplog.set_level(logging.WARNING, logger="anygate.startup")
    with inprocess_gateway(settings, upstream) as gw:
        gw.run(gw.app.state.registry.discover_all())  # a later refresh says nothing again
    warnings = [r.getMessage() for r in caplog.records if r.name == "anygate.startup"]
    if discovery == "works":
        assert warnings == [
            "configuration: alias 'bad' points at 'fake/missing', but provider 'fake' does not list 'missing' "
            "(it lists 2 models)",
            "configuration: fallback 'fake/gone' of 'fake/served' is skipped: provider 'fake' does not list 'gone' "
            "(it lists 2 models)",
        ]
    else:  # the configured list is what is known: 'served' is not on it
        assert warnings[0] == (
            "configuration: alias 'good' points at 'fake/served', but provider 'fake' does not list 'served' "
            "(it lists 1 model)"
        )
