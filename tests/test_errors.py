"""Every error a client can meet, on real sockets: status, the OpenAI error shape, and x-request-id.

Also access (keys, --no-auth), health, metrics, and that no secret reaches logs or metrics.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest

from anygate.auth import Principal, hash_key
from anygate.management import provider_view
from anygate.telemetry import JsonFormatter, mask_secrets
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.gateway import (
    ADMIN_KEY,
    PROVIDER_KEY,
    RunningGateway,
    fake_provider,
    gateway_settings,
    serve_gateway,
)

pytestmark = pytest.mark.sockets

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
USER_KEY = "user-key-without-prefix-8d1f0c"
BODY_LIMIT = 2048


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(models=["slow-model"]) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, slow_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    dead = {
        "id": "dead",
        "type": "custom",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "api_key": "k",
        "allow_private_network": True,
        "max_retries": 0,
    }
    settings = gateway_settings(
        fake_provider(upstream),
        fake_provider(slow_upstream, "slow", timeout=0.5),
        dead,
        max_body_bytes=BODY_LIMIT,
    )
    with serve_gateway(settings) as gw:
        gw.app.state.keyring.add(hash_key(USER_KEY), Principal(key_id="user-1", is_admin=False, label="student"))
        yield gw


def reset(upstream: FakeUpstream) -> None:
    """Forget earlier requests and any reply a test queued but never used."""
    upstream.requests.clear()
    upstream._queue.clear()


@pytest.fixture
def client(gateway: RunningGateway, upstream: FakeUpstream) -> Iterator[httpx2.Client]:
    reset(upstream)
    with gateway.client() as http:
        yield http


@pytest.fixture
def fresh(upstream: FakeUpstream) -> Iterator[httpx2.Client]:
    """A gateway of its own, for tests whose upstream failures change routing health (cool-downs)."""
    reset(upstream)
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw, gw.client() as http:
        yield http


def assert_error(response: httpx2.Response, status: int, type_: str, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == type_
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if code is not None:
        assert error["code"] == code
    return dict(error)


# ------------------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "JSON"),
        (b'{"model": "fake-model",}', "JSON"),
        (b"", "empty"),
        (b"[1, 2]", "object"),
        (b'"a string"', "object"),
        (b"null", "object"),
        (b"42", "object"),
    ],
)
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"])
def test_a_body_that_is_not_a_json_object(client: httpx2.Client, route: str, body: bytes, words: str) -> None:
    error = assert_error(client.post(route, content=body), 400, "invalid_request_error")
    assert words in error["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"messages": []}, "Missing required parameter: 'model'"),
        ({"model": None, "messages": []}, "Missing required parameter: 'model'"),
        ({"model": 123, "messages": []}, "'model' must be a non-empty string"),
        ({"model": ["a"], "messages": []}, "'model' must be a non-empty string"),
        ({"model": "", "messages": []}, "'model' must be a non-empty string"),
    ],
)
def test_missing_or_wrong_model(client: httpx2.Client, upstream: FakeUpstream, payload: Any, message: str) -> None:
    error = assert_error(client.post("/v1/chat/completions", json=payload), 400, "invalid_request_error")
    assert (error["message"], error["param"]) == (message, "model")
    assert upstream.requests == []


@pytest.mark.parametrize("model", ["no-such-model", "fake/no-such-model", "fake:typo", "nope/fake-model"])
def test_unknown_model_is_404_naming_it(client: httpx2.Client, upstream: FakeUpstream, model: str) -> None:
    error = assert_error(
        client.post("/v1/chat/completions", json={**CHAT, "model": model}), 404, "not_found_error", "model_not_found"
    )
    assert model in error["message"]
    assert error["param"] == "model"
    assert upstream.requests == []


def test_unknown_provider(client: httpx2.Client) -> None:
    error = assert_error(client.get("/v1/providers/nope/models"), 404, "not_found_error")
    assert "nope" in error["message"]
    assert_error(client.post("/proxy/nope/v1/chat/completions", json=CHAT), 404, "not_found_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing-here"),
        ("GET", "/v2/chat/completions"),
        ("DELETE", "/v1/provider"),
    ],
)
def test_unknown_route_is_404(client: httpx2.Client, method: str, path: str) -> None:
    error = assert_error(client.request(method, path), 404, "not_found_error")
    assert error["message"].startswith("Route not implemented: ")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/embeddings", "POST"),
        ("DELETE", "/v1/completions", "POST"),
        ("OPTIONS", "/v1/responses", "POST"),
        ("POST", "/v1/models", "GET"),
        ("POST", "/v1/providers/fake/models", "GET"),
        ("DELETE", "/v1/keys", "GET, POST"),  # one route per method at this path: all are named
        ("POST", "/v1/keys/key_x", "DELETE, GET, PATCH"),
        ("POST", "/ui/", "GET, HEAD"),
        ("POST", "/metrics", "GET"),
        ("DELETE", "/health", "GET"),
        # A path of its own, though /v1/providers/{provider_id} would take it: not a provider's.
        ("GET", "/v1/providers/health-check", "POST"),
        ("DELETE", "/v1/providers/health-check", "POST"),
    ],
)
def test_a_known_path_with_a_wrong_method_is_405_with_allow(
    client: httpx2.Client, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    error = assert_error(response, 405, "invalid_request_error")
    assert response.headers["allow"] == allowed
    assert error["code"] == "method_not_allowed" and method in error["message"]


# ------------------------------------------------------------------------------------------ body size


def test_a_body_over_the_limit_is_413(client: httpx2.Client, upstream: FakeUpstream) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
    assert_error(client.post("/v1/chat/completions", json=big), 413, "invalid_request_error")
    assert upstream.requests == []


def test_a_chunked_body_over_the_limit_is_413(client: httpx2.Client, upstream: FakeUpstream) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "fake-model", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}]}'

    response = client.post("/v1/chat/completions", content=chunks())
    assert_error(response, 413, "invalid_request_error")
    assert upstream.requests == []


def test_a_body_at_the_limit_is_accepted(client: httpx2.Client) -> None:
    raw = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": ""}]})
    padded = raw[:-1] + b" " * (BODY_LIMIT - len(raw)) + b"}"
    assert len(padded) == BODY_LIMIT
    assert client.post("/v1/chat/completions", content=padded).status_code == 200


def test_the_proxy_enforces_the_body_limit_too(client: httpx2.Client) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
    assert_error(client.post("/proxy/fake/v1/chat/completions", json=big), 413, "invalid_request_error")


# ------------------------------------------------------------------------------------------ upstream faults


def test_unreachable_upstream_is_502(client: httpx2.Client) -> None:
    error = assert_error(client.post("/v1/chat/completions", json={**CHAT, "model": "dead/m"}), 502, "upstream_error")
    assert "127.0.0.1" not in error["message"]


def test_upstream_timeout_is_504(client: httpx2.Client, slow_upstream: FakeUpstream) -> None:
    slow_upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
    response = client.post("/v1/chat/completions", json={**CHAT, "model": "slow-model"})
    assert_error(response, 504, "upstream_timeout", "upstream_timeout")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_upstream_client_errors_pass_through_with_their_body(
    fresh: httpx2.Client, upstream: FakeUpstream, status: int
) -> None:
    reply = Reply.error(status, "This model's maximum context length is 8192 tokens", code="context_length_exceeded")
    upstream.script(reply, path="/v1/chat/completions")
    response = fresh.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == status
    assert response.headers["x-request-id"]
    assert response.json() == reply.json


def test_an_upstream_error_body_with_a_secret_is_not_passed_on(fresh: httpx2.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(400, f"Invalid key sk-live-{'a' * 20} for org"), path="/v1/chat/completions")
    response = fresh.post("/v1/chat/completions", json=CHAT)
    error = assert_error(response, 400, "upstream_error")
    assert "sk-live" not in response.text
    assert "400" in error["message"]


def test_a_secret_echoed_in_any_member_of_an_upstream_error_is_not_passed_on(
    fresh: httpx2.Client, upstream: FakeUpstream
) -> None:
    body = {"error": {"message": "Invalid key", "type": "invalid_request_error", "param": "Bearer sk-live-abcdefgh"}}
    upstream.script(Reply(status=401, json=body), path="/v1/chat/completions")
    response = fresh.post("/v1/chat/completions", json=CHAT)
    assert_error(response, 401, "upstream_error")
    assert "sk-live" not in response.text


def test_the_upstream_error_message_reaches_a_library_user() -> None:
    from anygate.errors import UpstreamStatusError

    safe = UpstreamStatusError(400, b'{"error": {"message": "max_tokens is too large", "type": "x"}}')
    assert safe.message == "Upstream returned HTTP 400: max_tokens is too large"
    leaky = UpstreamStatusError(400, b'{"error": {"message": "bad key sk-live-abcdefgh"}}')
    assert leaky.message == "Upstream returned HTTP 400" and leaky.upstream_body is None


def test_an_upstream_error_that_is_not_openai_shaped_gets_the_contract_shape(
    fresh: httpx2.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(status=400, body=b"<html>Bad Request</html>"), path="/v1/chat/completions")
    assert_error(fresh.post("/v1/chat/completions", json=CHAT), 400, "upstream_error")


def test_upstream_server_errors_keep_the_contract_shape(fresh: httpx2.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply(status=503, body=b"upstream connect error"), path="/v1/chat/completions")
    response = fresh.post("/v1/chat/completions", json=CHAT)
    error = assert_error(response, 503, "upstream_error")
    assert "503" in error["message"]


def test_invalid_json_from_the_upstream_is_502(fresh: httpx2.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.invalid_json(), path="/v1/chat/completions")
    assert_error(fresh.post("/v1/chat/completions", json=CHAT), 502, "upstream_error")


def read_stream(client: httpx2.Client, payload: dict[str, Any]) -> tuple[httpx2.Response, list[bytes]]:
    with client.stream("POST", "/v1/chat/completions", json={**payload, "stream": True}) as response:
        raw = b"".join(response.iter_bytes())
    return response, [event for event in raw.split(b"\n\n") if event.strip()]


def test_a_stream_that_breaks_after_it_started_ends_with_an_error_event(
    fresh: httpx2.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply(reset_after_events=2), path="/v1/chat/completions")
    response, events = read_stream(fresh, CHAT)
    assert response.status_code == 200
    assert len(events) == 3
    assert all(b"chat.completion.chunk" in e for e in events[:2])
    assert events[-1].startswith(b"data: ")
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error"
    assert not any(b"[DONE]" in e for e in events)


def test_a_stream_that_stalls_after_it_started_ends_with_a_timeout_event(upstream: FakeUpstream) -> None:
    reset(upstream)
    upstream.script(Reply(hang_after_events=2), path="/v1/chat/completions")
    with serve_gateway(gateway_settings(fake_provider(upstream, timeout=0.5))) as gw, gw.client() as client:
        response, events = read_stream(client, CHAT)
    assert response.status_code == 200
    assert len(events) == 3
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["type"] == "upstream_timeout"
    assert not any(b"[DONE]" in e for e in events)


def test_a_half_sent_event_is_never_relayed(fresh: httpx2.Client, upstream: FakeUpstream) -> None:
    whole = b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}\n\n'
    upstream.script(
        Reply(raw_events=[whole, b'data: {"id":"c","obj'], reset_after_events=2), path="/v1/chat/completions"
    )
    response, events = read_stream(fresh, CHAT)
    assert response.status_code == 200
    assert events[0] + b"\n\n" == whole
    assert len(events) == 2
    assert orjson.loads(events[1].removeprefix(b"data: "))["error"]["type"] == "upstream_error"


def test_a_stream_that_fails_before_it_starts_is_a_plain_error(fresh: httpx2.Client, upstream: FakeUpstream) -> None:
    # Twice: a 400 to a stream where accounting added stream_options is tried once more without them.
    upstream.script(
        Reply.error(400, "bad stream request"), Reply.error(400, "bad stream request"), path="/v1/chat/completions"
    )
    response, events = read_stream(fresh, CHAT)
    assert response.status_code == 400
    assert orjson.loads(b"".join(events))["error"]["message"] == "bad stream request"


# ------------------------------------------------------------------------------------------ access


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-not-a-key"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": "Bearer"},
        {"x-api-key": "sk-not-a-key"},
        {"Cookie": f"key={ADMIN_KEY}"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/providers"),
        ("POST", "/proxy/fake/v1/chat/completions"),
    ],
)
def test_a_key_is_required(
    gateway: RunningGateway, upstream: FakeUpstream, headers: dict[str, str], method: str, path: str
) -> None:
    reset(upstream)
    with gateway.client(key=None) as bare:
        response = bare.request(method, path, json=CHAT, headers=headers)
    assert_error(response, 401, "authentication_error")
    assert upstream.requests == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {ADMIN_KEY}"},
        {"authorization": f"bearer {ADMIN_KEY}"},
        {"x-api-key": ADMIN_KEY},
        {"api-key": ADMIN_KEY},
        {"Authorization": f"Bearer {USER_KEY}"},
    ],
)
def test_every_credential_header_works(gateway: RunningGateway, headers: dict[str, str]) -> None:
    with gateway.client(key=None) as bare:
        assert bare.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
        assert bare.get("/v1/models", headers=headers).status_code == 200


def test_health_check_is_for_admins(gateway: RunningGateway) -> None:
    with gateway.client(key=USER_KEY) as user:
        assert_error(user.post("/v1/providers/health-check"), 403, "permission_error")
    with gateway.client() as admin:
        response = admin.post("/v1/providers/health-check")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    by_id = {p["id"]: p for p in body["providers"]}
    assert by_id["fake"]["healthy"] is True
    assert by_id["dead"]["healthy"] is False and by_id["dead"]["error"]
    assert all(isinstance(p["latency_ms"], (int, float)) for p in by_id.values())


def test_no_auth_accepts_requests_without_a_key(upstream: FakeUpstream) -> None:
    import openai

    with serve_gateway(gateway_settings(fake_provider(upstream), admin_key=None, no_auth=True)) as gw:
        with gw.client(key=None) as bare:
            assert bare.post("/v1/chat/completions", json=CHAT).status_code == 200
        # The SDK always sends some key: with --no-auth any key is accepted.
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="not-needed", max_retries=0) as sdk:
            assert sdk.chat.completions.create(model="fake-model", messages=[]).choices


# ------------------------------------------------------------------------------------------ request ids


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/chat/completions", CHAT),
        ("POST", "/v1/chat/completions", {"model": "zzz"}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/providers", None),
        ("GET", "/health", None),
        ("GET", "/metrics", None),
        ("GET", "/nowhere", None),
    ],
)
def test_every_response_carries_a_request_id(client: httpx2.Client, method: str, path: str, payload: Any) -> None:
    response = client.request(method, path, json=payload)
    assert len(response.headers["x-request-id"]) >= 8
    echoed = client.request(method, path, json=payload, headers={"x-request-id": "trace-42.a:b"})
    assert echoed.headers["x-request-id"] == "trace-42.a:b"
    replaced = client.request(method, path, json=payload, headers={"x-request-id": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"


def test_the_request_id_is_not_sent_upstream_as_a_client_header(client: httpx2.Client, upstream: FakeUpstream) -> None:
    client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "client-chosen"})
    assert upstream.requests[-1].headers.get("x-request-id") != "client-chosen"


# ------------------------------------------------------------------------------------------ health, metrics, logs


def test_health_and_readiness_need_no_key(gateway: RunningGateway) -> None:
    with gateway.client(key=None) as bare:
        assert bare.get("/health").json() == {"status": "ok"}
        ready = bare.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}  # naming nothing: the detail needs the admin key


def metric_lines(text: str, name: str, **labels: str) -> list[str]:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return [line for line in text.splitlines() if line.startswith(name + "{") and all(w in line for w in wanted)]


def test_metrics_count_requests_by_provider_model_and_status(client: httpx2.Client, upstream: FakeUpstream) -> None:
    client.post("/v1/chat/completions", json=CHAT)
    upstream.script(Reply.error(400, "nope"), path="/v1/chat/completions")
    client.post("/v1/chat/completions", json=CHAT)
    with httpx2.Client(base_url=str(client.base_url)) as bare:
        text = bare.get("/metrics").text
    assert metric_lines(text, "anygate_requests_total", provider="fake", model="fake-model", status="200")
    assert metric_lines(text, "anygate_requests_total", provider="fake", model="fake-model", status="400")
    assert metric_lines(text, "anygate_tokens_total", provider="fake", model="fake-model", direction="input")
    for secret in (ADMIN_KEY, PROVIDER_KEY, USER_KEY):
        assert secret not in text


def test_names_a_client_makes_up_do_not_become_metric_labels(client: httpx2.Client) -> None:
    for n in range(3):
        response = client.post("/proxy/fake/v1/chat/completions", json={**CHAT, "model": f"made-up-{n}"})
        assert response.status_code == 200
    with httpx2.Client(base_url=str(client.base_url)) as bare:
        text = bare.get("/metrics").text
    assert "made-up-" not in text
    assert metric_lines(text, "anygate_requests_total", provider="fake", model="unlisted", status="200")
    assert metric_lines(text, "anygate_tokens_total", provider="fake", model="unlisted", direction="input")


def test_metrics_can_require_a_key(upstream: FakeUpstream) -> None:
    with serve_gateway(gateway_settings(fake_provider(upstream), metrics_public=False)) as gw:
        with gw.client(key=None) as bare:
            assert_error(bare.get("/metrics"), 401, "authentication_error")
            assert bare.get("/health").status_code == 200
        with gw.client() as client:
            assert client.get("/metrics").status_code == 200


def test_streamed_usage_reaches_the_token_metrics(fresh: httpx2.Client) -> None:
    payload = {**CHAT, "stream_options": {"include_usage": True}}
    response, events = read_stream(fresh, payload)
    assert response.status_code == 200 and events[-1] == b"data: [DONE]"
    text = fresh.get("/metrics").text
    [line] = metric_lines(text, "anygate_tokens_total", provider="fake", model="fake-model", direction="output")
    assert float(line.rsplit(" ", 1)[1]) == 5.0


def test_an_unexpected_failure_in_a_management_route_is_a_contract_shaped_500(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_gateway(gateway_settings(fake_provider(upstream))) as gw:

        def broken(registry: object, runtime: object) -> dict[str, Any]:
            raise RuntimeError("simulated bug")

        monkeypatch.setattr(provider_view, "live_of", broken)  # what every provider's view reads of the registry
        with gw.client() as client:
            response = client.get("/v1/providers")
            after = client.get("/health")
    error = assert_error(response, 500, "internal_error")
    assert "simulated bug" not in error["message"]
    assert after.status_code == 200


def test_no_secret_in_logs(gateway: RunningGateway, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with gateway.client(key=USER_KEY) as user:
        user.post("/v1/chat/completions", json=CHAT)
        user.post("/v1/chat/completions", json={**CHAT, "model": "dead/m"})
        user.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers={"x-api-key": ADMIN_KEY})
        user.get("/v1/providers")
    with gateway.client() as admin:
        admin.post("/v1/providers/health-check")
    records = [r for r in caplog.records if r.name.startswith("anygate")]
    assert records, "the gateway logged nothing"
    formatter = JsonFormatter()
    for record in records:
        raw = record.getMessage() + repr(getattr(record, "fields", "")) + formatter.format(record)
        for secret in (ADMIN_KEY, PROVIDER_KEY, USER_KEY):
            assert secret not in raw, record


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer ***"),
        ("BEARER xyz", "BEARER ***"),
        ("key sk-ag-0123456789abcdef leaked", "key *** leaked"),
        ('{"api_key": "hunter22"}', '{"api_key": "***"}'),
        ("API-KEY=abc123", "API-KEY=***"),
        ("Token: t0k3n", "Token: ***"),
        ("password='pw1'", "password='***'"),
        ("SECRET = s3cr3t", "SECRET = ***"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("sk-no", "sk-no"),  # too short to be a key
        ("a monkey's tokens", "a monkey's tokens"),  # a hint alone is not a secret
    ],
)
def test_secrets_are_masked_in_any_case_and_other_text_is_left_alone(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked
