"""The provider-scoped passthrough ``/proxy/{provider}/v1/{endpoint}`` (seed 004), on real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.support.fake_upstream import FakeUpstream, RecordedRequest
from tests.support.gateway import ADMIN_KEY, PROVIDER_KEY, fake_provider, gateway_settings, serve_gateway

pytestmark = pytest.mark.sockets

CHAT = b'{"model": "any-upstream-model",  "messages": [{"role": "user", "content": "hi"}]}'
IDENTIFYING = {
    "cookie": "a=b",
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "example.org",
    "forwarded": "for=203.0.113.7",
    "x-real-ip": "203.0.113.7",
    "cf-connecting-ip": "203.0.113.7",
    "cf-ipcountry": "VN",
    "cf-ray": "abc",
    "cf-visitor": '{"scheme":"https"}',
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


@pytest.fixture(scope="module")
def gw_client(upstream: FakeUpstream) -> Iterator[httpx2.Client]:
    settings = gateway_settings(
        fake_provider(upstream),
        fake_provider(upstream, "keyless-needed", api_key=None),
        fake_provider(upstream, "open", auth="none", api_key=None),
        fake_provider(upstream, "azureish", auth="api-key", headers={"X-Tenant": "cs"}),
        fake_provider(upstream, "narrow", proxy_endpoints=["POST responses", "GET models"]),
    )
    with serve_gateway(settings) as gw, gw.client() as client:
        yield client


@pytest.fixture
def up(upstream: FakeUpstream) -> FakeUpstream:
    upstream.requests.clear()
    return upstream


def last(up: FakeUpstream) -> RecordedRequest:
    return up.requests[-1]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat/completions", CHAT),
        ("completions", b'{"model": "m", "prompt": "hi"}'),
        ("embeddings", b'{"model": "m", "input": "hi"}'),
    ],
)
def test_allowed_posts_go_to_base_url_and_endpoint_with_the_body_untouched(
    gw_client: httpx2.Client, up: FakeUpstream, endpoint: str, body: bytes
) -> None:
    response = gw_client.post(f"/proxy/fake/v1/{endpoint}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    seen = last(up)
    assert (seen.method, seen.path, seen.body) == ("POST", f"/v1/{endpoint}", body)
    assert seen.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_model_names_are_not_resolved_or_rewritten(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    body = b'{"model": "fake/whatever", "messages": []}'
    assert gw_client.post("/proxy/fake/v1/chat/completions", content=body).status_code == 200
    assert last(up).body == body


def test_get_models_is_allowed_and_sends_no_body(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    response = gw_client.request("GET", "/proxy/fake/v1/models", content=b'{"sneaky": true}')
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "fake-model"
    seen = last(up)
    assert (seen.method, seen.path, seen.body) == ("GET", "/v1/models", b"")
    assert "content-length" not in seen.headers or seen.headers["content-length"] == "0"
    assert "transfer-encoding" not in seen.headers


def test_streaming_through_the_proxy(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    body = b'{"model": "m", "messages": [], "stream": true}'
    with gw_client.stream("POST", "/proxy/fake/v1/chat/completions", content=body) as response:
        raw = response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/proxy/unknown/v1/chat/completions"),
        ("POST", "/proxy/fake/v1/responses"),
        ("POST", "/proxy/fake/v1/images/generations"),
        ("POST", "/proxy/fake/v1/chat/completions/extra"),
        ("POST", "/proxy/fake/v1/../../admin"),
        ("GET", "/proxy/fake/v1/chat/completions"),
        ("DELETE", "/proxy/fake/v1/models"),
        ("POST", "/proxy/fake/v1/models"),
        ("PUT", "/proxy/fake/v1/embeddings"),
        ("POST", "/proxy/narrow/v1/chat/completions"),
    ],
)
def test_anything_off_the_allowlist_is_route_not_implemented(
    gw_client: httpx2.Client, up: FakeUpstream, method: str, path: str
) -> None:
    response = gw_client.request(method, path, content=CHAT)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert error["message"].startswith("Route not implemented: ")
    assert response.headers["x-request-id"]
    assert up.requests == []


def test_route_not_implemented_names_the_path(gw_client: httpx2.Client) -> None:
    response = gw_client.post("/proxy/fake/v1/responses", content=CHAT)
    assert response.json()["error"]["message"] == "Route not implemented: /proxy/fake/v1/responses"


def test_a_per_provider_allowlist(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    response = gw_client.post("/proxy/narrow/v1/responses", content=b'{"model": "m", "input": "hi"}')
    assert response.status_code == 200
    assert last(up).path == "/v1/responses"


def test_missing_provider_key_is_401_naming_the_provider(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    response = gw_client.post("/proxy/keyless-needed/v1/chat/completions", content=CHAT)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"] == "No API key configured for keyless-needed"
    assert error["type"] == "authentication_error"
    assert up.requests == []


def test_a_keyless_provider_sends_no_credentials(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    assert gw_client.post("/proxy/open/v1/chat/completions", content=CHAT).status_code == 200
    assert "authorization" not in last(up).headers
    assert "api-key" not in last(up).headers


def test_api_key_auth_style_and_custom_headers(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    assert gw_client.post("/proxy/azureish/v1/chat/completions", content=CHAT).status_code == 200
    headers = last(up).headers
    assert headers["api-key"] == PROVIDER_KEY
    assert headers["x-tenant"] == "cs"
    assert "authorization" not in headers


@pytest.mark.parametrize("credential", ["authorization", "x-api-key", "api-key"])
def test_the_gateway_key_never_goes_upstream(
    gw_client: httpx2.Client, up: FakeUpstream, upstream: FakeUpstream, credential: str
) -> None:
    # A bug once: the gateway's own token forwarded upstream in x-api-key
    value = f"Bearer {ADMIN_KEY}" if credential == "authorization" else ADMIN_KEY
    with httpx2.Client(base_url=str(gw_client.base_url)) as bare:
        response = bare.post("/proxy/open/v1/chat/completions", content=CHAT, headers={credential: value})
    assert response.status_code == 200
    headers = last(up).headers
    assert not any(ADMIN_KEY in v for v in headers.values())
    assert "x-api-key" not in headers and "api-key" not in headers and "authorization" not in headers


def test_client_identifying_headers_are_stripped(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    response = gw_client.post(
        "/proxy/fake/v1/chat/completions", content=CHAT, headers={**IDENTIFYING, "x-title": "my app"}
    )
    assert response.status_code == 200
    headers = last(up).headers
    for name in IDENTIFYING:
        assert name not in headers, name
    assert headers["x-title"] == "my app"
    assert headers["host"].startswith("127.0.0.1:")


def test_the_proxy_needs_a_key(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    with httpx2.Client(base_url=str(gw_client.base_url)) as bare:
        response = bare.post("/proxy/fake/v1/chat/completions", content=CHAT)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert up.requests == []


def test_proxy_for_an_aliased_env_provider(upstream: FakeUpstream) -> None:
    """``/proxy/openrouter/...`` reaches the env-defined provider whichever id it has (seed 003)."""
    from anygate.settings import load_settings

    settings = load_settings(
        {},
        {
            "OPENAI_COMPATIBLE_API_KEY": PROVIDER_KEY,
            "OPENAI_COMPATIBLE_BASE_URL": upstream.base_url,
            "ANYGATE_ADMIN_KEY": ADMIN_KEY,
            "ANYGATE_DATA_DIR": "data",
        },
    )
    upstream.requests.clear()
    with serve_gateway(settings) as gw, gw.client() as client:
        for provider in ("openai_compatible", "openrouter"):
            response = client.post(f"/proxy/{provider}/v1/chat/completions", content=CHAT)
            assert response.status_code == 200, (provider, response.text)
    assert [r.path for r in upstream.requests_to("/v1/chat/completions")] == ["/v1/chat/completions"] * 2


def test_hop_by_hop_headers_are_not_forwarded(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    hop = {
        "connection": "keep-alive, x-hop-only",
        "x-hop-only": "for the next hop",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "proxy-authorization": "Basic c2VjcmV0",
    }
    for route in ("/proxy/fake/v1/chat/completions", "/v1/chat/completions"):
        body = CHAT if route.startswith("/proxy") else b'{"model": "fake/fake-model", "messages": []}'
        assert gw_client.post(route, content=body, headers=hop).status_code == 200
        headers = last(up).headers
        for name in ("keep-alive", "te", "proxy-authorization", "x-hop-only"):
            assert name not in headers, (route, name)


def test_only_safe_upstream_response_headers_come_back(gw_client: httpx2.Client, up: FakeUpstream) -> None:
    from tests.support.fake_upstream import Reply

    upstream_headers = {
        "Set-Cookie": "upstream-session=1",
        "x-ratelimit-remaining-requests": "99",
        "openai-processing-ms": "12",
        "Via": "1.1 upstream-proxy",
        "x-internal-upstream": "node-7",
    }
    up.script(Reply(headers=upstream_headers), path="/v1/chat/completions")
    response = gw_client.post("/proxy/fake/v1/chat/completions", content=CHAT)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "99"
    assert response.headers["openai-processing-ms"] == "12"
    for name in ("set-cookie", "via", "x-internal-upstream"):
        assert name not in response.headers


def test_a_key_limited_to_some_models_may_proxy_to_them(upstream: FakeUpstream) -> None:
    from anygate.auth import Principal, hash_key

    limited = Principal(key_id="k1", is_admin=False, models=("fake/allowed-*",), providers=("fake",))
    upstream.requests.clear()
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        gw.app.state.keyring.add(hash_key("limited-key"), limited)
        with gw.client(key="limited-key") as client:
            allowed = client.post("/proxy/fake/v1/chat/completions", json={"model": "allowed-1", "messages": []})
            denied = client.post("/proxy/fake/v1/chat/completions", json={"model": "other", "messages": []})
    assert allowed.status_code == 200, allowed.text
    assert denied.status_code == 403
    assert [r.json["model"] for r in upstream.requests_to("/v1/chat/completions")] == ["allowed-1"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages": []}',
        b'{"model": null, "messages": []}',
        b'{"model": ["allowed-1"], "messages": []}',
        b'{"model": {"id": "allowed-1"}, "messages": []}',
        b'{"model": "", "messages": []}',
    ],
)
def test_a_key_limited_to_some_models_must_name_one_through_the_proxy(upstream: FakeUpstream, body: bytes) -> None:
    """An upstream's default model (or one it reads from a list or object) is not on the key's list."""
    from anygate.auth import Principal, hash_key

    limited = Principal(key_id="k1", is_admin=False, models=("fake/allowed-*",))
    upstream.requests.clear()
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:
        gw.app.state.keyring.add(hash_key("limited-key"), limited)
        with gw.client(key="limited-key") as client:
            refused = client.post("/proxy/fake/v1/chat/completions", content=body)
            listed = client.get("/proxy/fake/v1/models")  # a GET carries no model: still allowed
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_model"
    assert listed.status_code == 200
    assert not upstream.requests_to("/v1/chat/completions")


DUPLICATED = [
    ("/v1/chat/completions", b'{"model": "fake/fake-model", "model": "fake/other", "messages": []}', "model"),
    ("/v1/chat/completions", b'{"model": "fake/fake-model", "mod\\u0065l": "fake/other", "messages": []}', "model"),
    ("/v1/chat/completions", b'{"model": "fake/fake-model", "messages": [], "n": 1, "n": 50}', "n"),
    ("/v1/chat/completions", b'{"model":"fake/fake-model","messages":[],"stream":false,"stream":true}', "stream"),
    ("/v1/chat/completions", b'{"model":"fake/fake-model","messages":[],"max_tokens":5,"max_tokens":9}', "max_tokens"),
    ("/proxy/fake/v1/chat/completions", b'{"model": "any", "messages": [], "model": "other"}', "model"),
    (
        "/proxy/narrow/v1/responses",
        b'{"model": "m", "input": "x", "max_output_tokens": 1, "max_output_tokens": 2}',
        "max_output_tokens",
    ),
]


@pytest.mark.parametrize(("route", "body", "member"), DUPLICATED)
def test_a_member_anygate_acts_on_given_twice_is_400(
    gw_client: httpx2.Client, up: FakeUpstream, route: str, body: bytes, member: str
) -> None:
    response = gw_client.post(route, content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("duplicate_member", member)
    assert not up.requests


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "fake/fake-model", "messages": [], "metadata": {"model": "x"}, "tools": [{"model": "y"}]}',
        b'{"model": "fake/fake-model", "messages": [], "temperature": 1, "temperature": 0}',
        b'{"model": "fake/fake-model", "messages": [{"role": "user", "content": "caf\\u00e9 \\"model\\""}]}',
    ],
)
def test_a_member_named_twice_only_in_nested_objects_or_an_unguarded_one_passes(
    gw_client: httpx2.Client, up: FakeUpstream, body: bytes
) -> None:
    assert gw_client.post("/v1/chat/completions", content=body).status_code == 200
    assert len(up.requests) == 1
