"""The provider probe has one deadline for all its checks and makes each request once: an upstream that
never answers is reported within the deadline, naming the check that got no answer (in memory, no sockets)."""

from __future__ import annotations

import time

from anygate.probe import CHECKS, probe_provider
from anygate.settings import ProviderConfig
from anygate.upstream import OpenAICompatibleProvider
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider


def client_for(upstream: FakeUpstream) -> OpenAICompatibleProvider:
    # Three retries and a 30 s first-byte timeout, as a provider has them by default: the probe uses neither.
    config = ProviderConfig.model_validate(fake_provider(upstream, max_retries=3, timeout=30))
    return OpenAICompatibleProvider.from_config(config, "k", upstream.transport())


async def test_an_upstream_that_never_answers_is_given_up_on_at_the_deadline_naming_the_check() -> None:
    upstream = FakeUpstream(models=("m",)).in_memory()
    upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    started = time.monotonic()
    async with client_for(upstream) as client:
        found = await probe_provider(client, "m", deadline=0.5)
    assert time.monotonic() - started < 3
    assert found["timed_out"] == "chat"
    assert found["chat"] == {"ok": False, "error": "no answer within 0.5 s (the probe's deadline)"}
    assert found["models"]["ok"] is True
    assert [check for check in CHECKS if check in found] == ["models", "chat"]  # the rest never tried
    assert len(upstream.requests_to("/v1/chat/completions")) == 1


async def test_a_failing_check_is_asked_once_and_the_probe_goes_on() -> None:
    upstream = FakeUpstream(models=("m",)).in_memory()
    upstream.script(Reply.error(503, "overloaded"), path="/v1/chat/completions")
    async with client_for(upstream) as client:
        found = await probe_provider(client, "m")
    assert found["chat"]["ok"] is False and "timed_out" not in found
    assert found["streaming"]["ok"] is True  # the next check ran
    # One plain chat request (the failed check, not retried), then the two streams.
    assert len(upstream.requests_to("/v1/chat/completions")) == 3
    assert client.max_retries == 3  # the gateway's client keeps its retries for real traffic


def test_the_api_answers_a_timed_out_probe_naming_the_check_and_stores_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from functools import partial

    from anygate import probe
    from anygate.api import routes_providers
    from tests.support.gateway import gateway_settings
    from tests.support.inprocess import inprocess_gateway

    # The route's probe with a short deadline, so that the test waits half a second, not PROBE_DEADLINE.
    monkeypatch.setattr(routes_providers, "probe_provider", partial(probe.probe_provider, deadline=0.5))
    upstream = FakeUpstream(models=("m",)).in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(upstream, max_retries=3)), upstream) as gw:
        upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
        with gw.client() as http:
            found = http.post("/v1/providers/fake/test", json={"model": "m"}).json()
            shown = http.get("/v1/providers").json()["data"]
    assert found["timed_out"] == "chat" and "no answer within 0.5 s" in found["chat"]["error"]
    assert found["capabilities"]["chat"] is False
    assert [p.get("capabilities") for p in shown if p["id"] == "fake"] == [None]  # nothing stored
    assert len(upstream.requests_to("/v1/chat/completions")) == 1
