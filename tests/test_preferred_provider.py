"""The preferred provider (``PREFERRED_PROVIDER``, ``default_provider:``) serves a bare model name that
several providers serve, under every routing strategy; the others serve only as its fallbacks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from anygate.settings import load_settings
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway

CHAT = {"model": "shared-model", "messages": [{"role": "user", "content": "hi"}]}
PROVIDERS = ("first", "second", "third")


def three_providers(up: FakeUpstream, **fields: Any) -> list[dict[str, Any]]:
    """Three providers serving the same model on one fake, told apart by their keys."""
    return [fake_provider(up, name, api_key=f"key-{name}", **fields) for name in PROVIDERS]


def served_by(up: FakeUpstream) -> Counter[str]:
    keys = (r.headers["authorization"].removeprefix("Bearer key-") for r in up.requests_to("/v1/chat/completions"))
    return Counter(keys)


@pytest.mark.parametrize("strategy", ["balanced", "ordered"])
def test_every_request_goes_to_the_preferred_provider_while_it_is_healthy(strategy: str) -> None:
    up = FakeUpstream(models=("shared-model",)).in_memory()
    settings = gateway_settings(*three_providers(up), default_provider="second", routing={"strategy": strategy})
    with inprocess_gateway(settings, up) as gw, gw.client() as http:
        for _ in range(12):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert served_by(up) == {"second": 12}


def test_the_preferred_provider_comes_before_every_priority_tier() -> None:
    up = FakeUpstream(models=("shared-model",)).in_memory()
    providers = [
        fake_provider(up, "cheap", api_key="key-cheap", priority=0),
        fake_provider(up, "own", api_key="key-own", priority=5),
    ]
    with inprocess_gateway(gateway_settings(*providers, default_provider="own"), up) as gw, gw.client() as http:
        for _ in range(6):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert served_by(up) == {"own": 6}


def test_preferred_provider_from_the_environment_is_first_under_the_default_strategy() -> None:
    up = FakeUpstream(models=("shared-model",)).in_memory()
    environ = {
        "OPENAI_COMPATIBLE_BASE_URL": up.base_url,
        "OPENAI_COMPATIBLE_API_KEY": "key-env",
        "OLLAMA_ENABLED": "true",
        "OLLAMA_BASE_URL": up.url,
        "PREFERRED_PROVIDER": "openrouter",  # names the env provider, whichever id it has
        "ANYGATE_ADMIN_KEY": ADMIN_KEY,
        "ANYGATE_DATA_DIR": str(Path.cwd() / "data"),
    }
    settings = load_settings({}, environ)
    with inprocess_gateway(settings, up) as gw, gw.client() as http:
        for _ in range(12):
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    chats = up.requests_to("/v1/chat/completions")
    assert [r.headers.get("authorization") for r in chats] == ["Bearer key-env"] * 12


def test_the_others_serve_as_fallbacks_when_the_preferred_provider_fails() -> None:
    up = FakeUpstream(models=("shared-model",)).in_memory()
    settings = gateway_settings(*three_providers(up), default_provider="third")
    with inprocess_gateway(settings, up) as gw, gw.client() as http:
        up.script(Reply.error(503, "down"))
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    chats = [r.headers["authorization"] for r in up.requests_to("/v1/chat/completions")]
    # the preferred first, then the next in configured order after it (wrapping)
    assert chats == ["Bearer key-third", "Bearer key-first"]


def test_a_name_only_one_provider_serves_is_not_affected() -> None:
    up = FakeUpstream(models=("shared-model",)).in_memory()
    settings = gateway_settings(*three_providers(up), default_provider="first")
    with inprocess_gateway(settings, up) as gw, gw.client() as http:
        assert http.post("/v1/chat/completions", json={**CHAT, "model": "second/shared-model"}).status_code == 200
    assert served_by(up) == {"second": 1}
