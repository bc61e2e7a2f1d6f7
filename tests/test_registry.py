"""The provider registry: discovery, configured and last-known lists, and what resolution sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from anygate.errors import ModelNotFound
from anygate.management.provider_view import routed_view
from anygate.models import Target
from anygate.registry import ProviderRegistry
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings

pytestmark = pytest.mark.sockets


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(models=["m1", "m2"]) as upstream:
        yield upstream


@pytest.fixture
async def pool() -> AsyncIterator[AiohttpTransport]:
    pool = AiohttpTransport()
    yield pool
    await pool.aclose()


async def test_discovery_then_failure_keeps_the_last_known_list(up: FakeUpstream, pool: AiohttpTransport) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up)), pool)
    runtime = registry.get("fake")
    assert (runtime.models, runtime.models_source) == (None, "unknown")
    assert registry.resolve("fake/anything") == [Target("fake", "anything")]
    with pytest.raises(ModelNotFound):
        registry.resolve("m1")

    await registry.discover(runtime)
    assert (runtime.models, runtime.models_source, runtime.discovery_error) == (["m1", "m2"], "discovered", None)
    assert registry.resolve("m1") == [Target("fake", "m1")]
    with pytest.raises(ModelNotFound):
        registry.resolve("fake/typo")

    up.script(Reply.error(500, "down"), path="/v1/models")
    await registry.discover(runtime)
    assert (runtime.models, runtime.models_source) == (["m1", "m2"], "last-known")
    assert runtime.discovery_error
    assert registry.resolve("m2") == [Target("fake", "m2")]


async def test_configured_models_are_merged_with_discovery(up: FakeUpstream, pool: AiohttpTransport) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up, models=["extra", "m1"])), pool)
    runtime = registry.get("fake")
    assert (runtime.models, runtime.models_source) == (["extra", "m1"], "configured")
    await registry.discover(runtime)
    assert sorted(runtime.models or []) == ["extra", "m1", "m2"]


async def test_failed_discovery_with_a_configured_list_uses_it(up: FakeUpstream, pool: AiohttpTransport) -> None:
    up.script(Reply.error(503), path="/v1/models")
    registry = ProviderRegistry(gateway_settings(fake_provider(up, models=["only-this"])), pool)
    runtime = registry.get("fake")
    await registry.discover(runtime)
    assert (runtime.models, runtime.models_source) == (["only-this"], "configured")
    assert runtime.discovery_error
    with pytest.raises(ModelNotFound):
        registry.resolve("m1")


async def test_the_preferred_provider_gets_bare_names_only_while_its_list_is_unknown(
    up: FakeUpstream, pool: AiohttpTransport
) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up), default_provider="fake"), pool)
    assert registry.resolve("some-model") == [Target("fake", "some-model")]
    await registry.discover_all()
    with pytest.raises(ModelNotFound):
        registry.resolve("some-model")


async def test_disabled_providers_are_not_run(up: FakeUpstream, pool: AiohttpTransport) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up), fake_provider(up, "off", enabled=False)), pool)
    assert list(registry.runtimes) == ["fake"]
    assert registry.find("off") is None


async def test_the_listed_view_never_shows_a_secret(up: FakeUpstream, pool: AiohttpTransport) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up, headers={"X-Secret-Header": "hdr-secret"})), pool)
    view = routed_view(registry, registry.get("fake"))
    assert "sk-fake" not in repr(view) and "hdr-secret" not in repr(view)


async def test_an_ollama_answering_html_on_api_tags_is_a_discovery_failure_not_a_crash(pool: AiohttpTransport) -> None:
    async with (
        FakeUpstream(models=["llama3:8b"], has_models_endpoint=False) as ollama,
        FakeUpstream(models=["m1"]) as healthy,
    ):
        ollama.script(Reply(body=b"<html>not an ollama</html>"), path="/api/tags")
        settings = gateway_settings(
            fake_provider(ollama, "olla", type="ollama", base_url=f"{ollama.url}/v1"), fake_provider(healthy)
        )
        registry = ProviderRegistry(settings, pool)
        await registry.discover_all()
        olla, fake = registry.get("olla"), registry.get("fake")
        assert olla.models_source == "unknown" and olla.discovery_error
        assert "not JSON" in olla.discovery_error
        assert fake.models == ["m1"]


async def test_a_provider_whose_discovery_breaks_does_not_stop_the_others(
    up: FakeUpstream, pool: AiohttpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ProviderRegistry(gateway_settings(fake_provider(up), fake_provider(up, "broken")), pool)

    async def explode() -> list[dict[str, object]]:
        raise RuntimeError("a bug in discovery")

    monkeypatch.setattr(registry.get("broken").client, "list_model_entries", explode)
    await registry.discover_all()
    up.models = ["m3"]
    await registry.discover_all()
    assert registry.get("fake").models == ["m3"]
