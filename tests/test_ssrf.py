"""The three SSRF defences, live: a gateway on a real port, fake upstreams on loopback, real DNS.

Each test fails if its defence is taken away:
- redirects are not followed (``allow_redirects=False`` in ``OpenAICompatibleProvider.open``), and a 3xx
  reaches the client as a 502 ``upstream_error``, not as the upstream's redirect;
- the connection pool resolves through ``GuardedResolver``: a host name that passes every check done
  without DNS but resolves to loopback is refused when connecting;
- saving a provider resolves its host and checks every address (``check_url_resolved``).

The host names are ones the test controls: ``socket.getaddrinfo`` (what the system resolver, asyncio and
aiohttp's default resolver all end in) answers 127.0.0.1 for them, in this process where the gateway runs.
Everything above that lookup is the gateway's real code.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from anygate.netguard import check_url
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import fake_provider, gateway_settings, serve_gateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.sockets  # the SSRF guard of the real transport, against loopback ports

HI = [{"role": "user", "content": "hi"}]
LOOPBACK_BY_DNS = "llm.internal.test"  # resolves to 127.0.0.1 (see ``controlled_dns``)


@pytest.fixture(autouse=True)
def controlled_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == LOOPBACK_BY_DNS else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


@pytest.fixture
def elsewhere() -> Iterator[FakeUpstream]:
    """Where a redirect points: it must never be reached."""
    with FakeUpstream.start_in_thread() as up:
        yield up


def chat_body(model: str = "fake/fake-model") -> dict[str, object]:
    return {"model": model, "messages": HI}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_an_upstream_redirect_is_not_followed_and_is_a_502(upstream, elsewhere, status: int) -> None:
    target = f"{elsewhere.base_url}/chat/completions"
    upstream.script(Reply(status=status, body=b"", headers={"Location": target}), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, models=["fake-model"]))) as gateway:
        with gateway.client() as http:
            response = http.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_redirect")
    assert "redirect refused" in error["message"] and target not in error["message"]
    assert elsewhere.requests == []
    assert len(upstream.requests_to("/v1/chat/completions")) == 1  # not retried either


def test_a_redirect_on_the_provider_proxy_route_is_refused_too(upstream, elsewhere) -> None:
    with serve_gateway(gateway_settings(fake_provider(upstream, models=["fake-model"]))) as gateway:
        redirect = Reply(status=302, body=b"", headers={"Location": f"{elsewhere.base_url}/models"})
        upstream.script(redirect, path="/v1/models")  # after the discovery at start
        with gateway.client() as http:
            response = http.get("/proxy/fake/v1/models")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_redirect"
    assert elsewhere.requests == []


def test_a_host_resolving_to_loopback_is_refused_at_connect(upstream) -> None:
    """A file provider is checked without DNS at load; only the guarded resolver can stop it."""
    url = f"http://{LOOPBACK_BY_DNS}:{upstream.url.rsplit(':', 1)[1]}/v1"
    check_url(url, allow_private_network=False)  # nothing but DNS tells where it points
    refused = fake_provider(upstream, "sneaky", base_url=url, models=["fake-model"], allow_private_network=False)
    allowed = fake_provider(upstream, "lab", base_url=url, models=["fake-model"], allow_private_network=True)
    with serve_gateway(gateway_settings(refused, allowed)) as gateway:
        with gateway.client() as http:
            upstream.requests.clear()
            response = http.post("/v1/chat/completions", json=chat_body("sneaky/fake-model"))
            assert response.status_code == 502, response.text
            assert response.json()["error"]["type"] == "upstream_error"
            assert upstream.requests == []
            # the same address is reached when the provider allows the private network
            assert http.post("/v1/chat/completions", json=chat_body("lab/fake-model")).status_code == 200
    assert upstream.requests_to("/v1/chat/completions")


def test_saving_a_provider_resolves_its_host_and_refuses_a_private_answer(upstream) -> None:
    url = f"http://{LOOPBACK_BY_DNS}:9/v1"
    check_url(url, allow_private_network=False)  # so the refusal below can only come from the DNS lookup
    with serve_gateway(gateway_settings()) as gateway:
        with gateway.client() as http:
            body = {"id": "sneaky", "type": "custom", "base_url": url, "api_key": "sk-x"}
            refused = http.post("/v1/providers", json=body)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert (error["param"], error["code"]) == ("base_url", "unsafe_url")
            assert "127.0.0.1" in error["message"] and "allow_private_network" in error["message"]
            assert http.get("/v1/providers/sneaky").status_code == 404
            allowed = http.post("/v1/providers", json={**body, "allow_private_network": True})
            assert allowed.status_code == 201, allowed.text


def test_an_upstream_quota_poll_goes_through_the_guard_too(upstream) -> None:
    """The quota poller uses the gateway's guarded sessions: a host resolving to loopback is refused for a
    provider that does not allow the private network, and reached for one that does."""
    url = f"http://{LOOPBACK_BY_DNS}:{upstream.url.rsplit(':', 1)[1]}/v1"
    quota = {"path": "/quota", "format": "neutral"}
    refused = fake_provider(upstream, "sneaky", base_url=url, models=["fake-model"], quota=quota)
    refused["allow_private_network"] = False
    allowed = fake_provider(upstream, "lab", base_url=url, models=["fake-model"], quota=quota)
    with serve_gateway(gateway_settings(refused, allowed)) as gateway:
        runtimes = gateway.app.state.registry.runtimes
        eventually(lambda: bool(runtimes["sneaky"].quota and runtimes["lab"].quota), "both quotas are polled")
        sneaky, lab = runtimes["sneaky"].quota, runtimes["lab"].quota
    assert sneaky is not None and sneaky["error"] == "Connection failed" and "tokens" not in sneaky
    assert lab is not None and lab["tokens"]["remaining"] == 4750000
    assert len(upstream.requests_to("/v1/quota")) == 1  # lab's poll; sneaky's never left the gateway
