"""Egress through an HTTP proxy: a provider's own ``proxy``, or ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

Every upstream request goes the same way (requests, model discovery, health checks, live tests, quota
polls), the SSRF guard still checks the upstream's host before anything reaches the proxy, and the
proxy's credentials stay secret. Real sockets: the gateway in-process on the real aiohttp transport, a
FakeUpstream and a recording proxy on loopback, host names answered by a table (no real DNS).
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from anygate.egress import ProxyEnvironment, parse_no_proxy, parse_proxy
from anygate.errors import ConfigError
from anygate.netguard import UnsafeURL
from anygate.settings import Settings, load_settings
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import ADMIN_KEY, PROVIDER_KEY, fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.names import MappedResolver
from tests.support.recording_proxy import RecordingProxy
from tests.support.tls import CertificateAuthority

pytestmark = pytest.mark.sockets

HOST = "upstream.test"
CREDENTIALS = "Basic " + base64.b64encode(b"corp-user:s3cret-proxy-pw").decode()
CHAT = {"model": "corp/fake-model", "messages": [{"role": "user", "content": "hi"}]}
NAMES = {HOST: "127.0.0.1", "internal.test": "10.0.0.5", "metadata.test": "169.254.169.254"}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(host_name=HOST) as up:
        yield up


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy.start_in_thread(hosts=NAMES, require_authorization=CREDENTIALS) as recording:
        yield recording


def network(**options: Any) -> AiohttpTransport:
    """The real transport, with the test's names (and, for HTTPS, its certificate authority)."""
    return AiohttpTransport(resolver=lambda: MappedResolver(NAMES), **options)


def with_credentials(proxy: RecordingProxy) -> str:
    return proxy.url.replace("http://", "http://corp-user:s3cret-proxy-pw@")


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def chat(gw: InProcessGateway, **body: Any) -> Any:
    with gw.client() as http:
        return http.post("/v1/chat/completions", json={**CHAT, **body})


# ------------------------------------------------------------------------------ a provider's own proxy


def test_every_request_of_a_provider_goes_through_its_proxy(upstream: FakeUpstream, proxy: RecordingProxy) -> None:
    provider = fake_provider(upstream, "corp", proxy={"url": with_credentials(proxy)}, quota={"path": "/quota"})
    with inprocess_gateway(gateway_settings(provider), transport=network()) as gw:
        assert chat(gw).status_code == 200
        streamed = chat(gw, stream=True)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        with gw.client() as http:
            assert http.post("/v1/providers/health-check").json()["providers"][0]["healthy"] is True
            tested = http.post("/v1/providers/corp/test", json={"model": "fake-model"}).json()
        assert tested["capabilities"]["chat"] is True
        base = upstream.base_url
        eventually(lambda: f"GET {base}/quota" in proxy.targets)  # the quota poll, in the background
    for expected in (f"GET {base}/models", f"POST {base}/chat/completions", f"POST {base}/embeddings"):
        assert expected in proxy.targets
    assert {r.headers.get("proxy-authorization") for r in proxy.requests} == {CREDENTIALS}
    # the upstream got every request, and never the proxy's credentials
    assert len(upstream.requests) == len(proxy.requests)
    assert not any("proxy-authorization" in {k.lower() for k in r.headers} for r in upstream.requests)
    assert upstream.requests_to("/v1/chat/completions")[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_an_https_upstream_is_reached_through_a_connect_tunnel(proxy: RecordingProxy) -> None:
    authority = CertificateAuthority.make()
    tls = authority.server_context(HOST)
    with FakeUpstream.start_in_thread(host_name=HOST, server_ssl=tls) as upstream:
        headers = {"Proxy-Authorization": CREDENTIALS}
        provider = fake_provider(upstream, "corp", proxy={"url": proxy.url, "headers": headers})
        transport = network(ssl=authority.client_context())
        with inprocess_gateway(gateway_settings(provider), transport=transport) as gw:
            assert chat(gw).status_code == 200
            assert "[DONE]" in chat(gw, stream=True).text
    assert upstream.base_url.startswith("https://")
    port = upstream.base_url.split(":")[2].split("/")[0]
    assert set(proxy.targets) == {f"CONNECT {HOST}:{port}"}  # the proxy sees the tunnel, nothing inside it
    assert {r.headers["proxy-authorization"] for r in proxy.requests} == {CREDENTIALS}
    assert len(upstream.requests_to("/v1/chat/completions")) == 2


def test_a_proxy_refusing_the_credentials_is_a_502_that_shows_none_of_them(
    upstream: FakeUpstream, proxy: RecordingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = proxy.url.replace("http://", "http://corp-user:wrong-pw-123@")
    provider = fake_provider(upstream, "corp", proxy={"url": wrong})
    with inprocess_gateway(gateway_settings(provider), transport=network()) as gw:
        answer = chat(gw)
        with gw.client() as http:
            shown = http.get("/v1/providers").text
    assert answer.status_code == 502
    assert "proxy" in answer.json()["error"]["message"] and "407" in answer.json()["error"]["message"]
    for text in (answer.text, shown, caplog.text):
        assert "wrong-pw-123" not in text and base64.b64encode(b"corp-user:wrong-pw-123").decode() not in text
    assert upstream.requests == []


# ------------------------------------------------------------------------------ SSRF through a proxy


@pytest.mark.parametrize(
    ("base_url", "private"),
    [
        ("http://internal.test/v1", False),  # a private address, not allowed for this provider
        ("http://metadata.test/v1", True),  # a metadata address: never
        ("http://nowhere.test/v1", True),  # does not resolve here: where the proxy would go is unchecked
    ],
)
def test_the_upstream_host_is_checked_before_anything_reaches_the_proxy(
    proxy: RecordingProxy, base_url: str, private: bool
) -> None:
    provider = {
        "id": "corp",
        "base_url": base_url,
        "api_key": PROVIDER_KEY,
        "models": ["fake-model"],
        "allow_private_network": private,
        "max_retries": 0,
        "proxy": {"url": with_credentials(proxy)},
    }
    with inprocess_gateway(gateway_settings(provider), transport=network()) as gw:
        answer = chat(gw)
    assert answer.status_code == 502
    assert "refused" in answer.json()["error"]["message"]
    assert proxy.requests == []


# ------------------------------------------------------------------------------ the environment's proxies


def env_settings(upstream: FakeUpstream, **env: str) -> Settings:
    environ = {
        "OPENAI_COMPATIBLE_BASE_URL": upstream.base_url,
        "OPENAI_COMPATIBLE_API_KEY": PROVIDER_KEY,
        "ANYGATE_ADMIN_KEY": ADMIN_KEY,
        "ANYGATE_DATA_DIR": str(Path.cwd() / "data"),
        **env,
    }
    return load_settings({}, environ)


def test_http_proxy_from_the_environment_carries_the_requests(upstream: FakeUpstream, proxy: RecordingProxy) -> None:
    settings = env_settings(upstream, HTTP_PROXY=with_credentials(proxy), NO_PROXY="other.test,.example.com")
    with inprocess_gateway(settings, transport=network()) as gw:
        assert chat(gw, model="openai_compatible/fake-model").status_code == 200
    assert f"POST {upstream.base_url}/chat/completions" in proxy.targets
    assert f"GET {upstream.base_url}/models" in proxy.targets


@pytest.mark.parametrize(
    "env",
    [
        {"NO_PROXY": f"{HOST}"},
        {"no_proxy": f".test:{0}"},  # a domain suffix, at the upstream's port (filled in below)
        {"NO_PROXY": "*"},
        {"ANYGATE_PROXY_FROM_ENVIRONMENT": "false"},
    ],
)
def test_no_proxy_and_the_setting_send_requests_directly(
    upstream: FakeUpstream, proxy: RecordingProxy, env: dict[str, str]
) -> None:
    port = upstream.base_url.split(":")[2].split("/")[0]
    env = {name: value.replace(":0", f":{port}") for name, value in env.items()}
    settings = env_settings(upstream, http_proxy=with_credentials(proxy), **env)
    with inprocess_gateway(settings, transport=network()) as gw:
        assert chat(gw, model="openai_compatible/fake-model").status_code == 200
    assert proxy.requests == []
    assert upstream.requests_to("/v1/chat/completions")


def test_a_providers_own_proxy_wins_over_the_environment(upstream: FakeUpstream, proxy: RecordingProxy) -> None:
    with RecordingProxy.start_in_thread(hosts=NAMES) as other:
        config = Path("anygate.yaml")
        config.write_text(
            f"providers:\n  - id: corp\n    base_url: {upstream.base_url}\n    api_key: k\n"
            f"    allow_private_network: true\n    proxy: {{url: '{with_credentials(proxy)}'}}\n",
            encoding="utf-8",
        )
        environ = {"HTTP_PROXY": other.url, "ANYGATE_ADMIN_KEY": ADMIN_KEY, "ANYGATE_DATA_DIR": str(Path.cwd())}
        settings = load_settings({"config_file": str(config)}, environ)
        with inprocess_gateway(settings, transport=network()) as gw:
            assert chat(gw).status_code == 200
        assert other.requests == []
    assert f"POST {upstream.base_url}/chat/completions" in proxy.targets


def test_a_bad_proxy_variable_stops_the_start_naming_it_but_not_its_value() -> None:
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as caught:
        load_settings({}, {"HTTPS_PROXY": "ftp://user:hunter2-pw@proxy:21"})
    assert "hunter2-pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "proxied"),
    [
        ("https://api.groq.com/openai/v1", "https-proxy"),
        ("http://llm.internal.example.com/v1", None),  # NO_PROXY .example.com: subdomains
        ("http://example.com/v1", None),
        ("http://10.1.2.3:8000/v1", None),  # NO_PROXY 10.0.0.0/8
        ("http://10.1.2.3:9000/v1", None),
        ("http://192.168.1.5/v1", "http-proxy"),
        ("http://gpu.lan:8080/v1", None),  # NO_PROXY gpu.lan:8080
        ("http://gpu.lan:8081/v1", "http-proxy"),
        ("http://localhost:11434/v1", None),  # loopback: always directly
        ("http://127.0.0.1:8000/v1", None),
        ("http://[::1]:8000/v1", None),
        ("https://notexample.com/v1", "https-proxy"),
    ],
)
def test_which_urls_the_environment_sends_through_which_proxy(url: str, proxied: str | None) -> None:
    environment = ProxyEnvironment(
        https=parse_proxy("https-proxy:3128"),
        http=parse_proxy("http://http-proxy:3128"),
        no_proxy=parse_no_proxy([".example.com", "10.0.0.0/8", " gpu.lan:8080 ", ""]),
    )
    chosen = environment.for_url(url)
    assert (chosen.url.split("//")[1].split(":")[0] if chosen else None) == proxied


def test_credentials_in_a_proxy_url_become_its_header_and_leave_the_url() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128")
    assert proxy.url == "http://proxy.corp:3128"
    assert proxy.headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"us@er:p:ss").decode()}
    assert "p:ss" not in repr(proxy) and "Basic" not in repr(proxy)
    with pytest.raises(UnsafeURL):
        parse_proxy("http://proxy.corp:3128/some/path")


# ------------------------------------------------------------------------------ the proxy's credentials


def test_proxy_credentials_are_encrypted_masked_and_never_follow_a_move(
    upstream: FakeUpstream, proxy: RecordingProxy
) -> None:
    settings = gateway_settings()
    body = {
        "id": "corp",
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream-1",
        "allow_private_network": True,
        "models": ["fake-model"],
        "proxy": {"url": with_credentials(proxy), "headers": {"X-Proxy-Tenant": "cs"}},
    }
    with inprocess_gateway(settings, transport=network()) as gw, gw.client() as http:
        created = http.post("/v1/providers", json=body)
        assert created.status_code == 201, created.text
        shown = created.json()["proxy"]
        assert shown == {"url": proxy.url, "headers": {"X-Proxy-Tenant": "cs", "Proxy-Authorization": "***"}}
        assert chat(gw).status_code == 200
        # sent back as shown ("***"), the stored credentials are kept
        assert http.put("/v1/providers/corp", json={"proxy": shown, "timeout": 20}).status_code == 200
        assert chat(gw).status_code == 200
        # the proxy moves: its credentials must be given again
        moved = {**shown, "url": "http://127.0.0.2:3128"}
        refused = http.put("/v1/providers/corp", json={"proxy": moved})
        assert refused.status_code == 400
        assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == (
            "api_key_required",
            "proxy.headers.Proxy-Authorization",
        )
        # the provider moves: every stored secret, the proxy's too, must be given again
        elsewhere = {"base_url": "http://127.0.0.3:9/v1", "api_key": "sk-upstream-2"}
        refused = http.put("/v1/providers/corp", json=elsewhere)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "proxy.headers.Proxy-Authorization"
        given = {**elsewhere, "proxy": {"url": with_credentials(proxy)}}
        assert http.put("/v1/providers/corp", json=given).status_code == 200
        everything = http.get("/v1/providers/corp").text + http.get("/v1/providers").text
    assert {r.headers["proxy-authorization"] for r in proxy.requests} == {CREDENTIALS}
    with sqlite3.connect(Path.cwd() / "data" / "anygate.db") as db:
        stored = " ".join(str(value) for row in db.execute("select config, secrets from providers") for value in row)
    for secret in ("s3cret-proxy-pw", CREDENTIALS.split()[1]):
        assert secret not in everything
        assert secret not in stored


@pytest.mark.parametrize(
    ("proxy_field", "param"),
    [
        ({"url": "ftp://proxy:21"}, "proxy.url"),
        ({"url": "http://proxy:3128/path"}, "proxy.url"),
        ({"url": "http://proxy:3128", "headers": {"Proxy-Authorization": "Basic a\r\nX: y"}}, None),
        ({"url": "http://proxy:3128", "headers": {"Host": "elsewhere"}}, "proxy.headers.Host"),
        ({"headers": {}}, "proxy.url"),
    ],
)
def test_a_bad_proxy_is_a_400_naming_the_field(proxy_field: dict[str, Any], param: str | None) -> None:
    body = {"id": "corp", "type": "openai", "api_key": "k", "proxy": proxy_field}
    with inprocess_gateway(gateway_settings()) as gw, gw.client() as http:
        refused = http.post("/v1/providers", json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param or (param is None and error["param"].startswith("proxy.headers"))
    assert "a\r\nX" not in refused.text


def test_an_upstream_echoing_the_proxy_credentials_has_them_redacted() -> None:
    token = base64.b64encode(b"corp-user:s3cret-proxy-pw").decode()
    up = FakeUpstream().in_memory()
    up.script(Reply.error(400, f"bad request from {token}"), path="/v1/chat/completions")
    provider = fake_provider(up, "corp", proxy={"url": "http://corp-user:s3cret-proxy-pw@proxy.corp:3128"})
    with inprocess_gateway(gateway_settings(provider), up) as gw:
        answer = chat(gw)
        sent = gw.app.state.transport.sent  # type: ignore[attr-defined]
    assert answer.status_code == 400 and token not in answer.text and "***" in answer.text
    assert {str(request.proxy) for request in sent} == {
        "Proxy(http://proxy.corp:3128, headers=['Proxy-Authorization'])"
    }
