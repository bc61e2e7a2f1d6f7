"""Usage on streams: asked only where welcome, and what asking added never reaches a client that did not ask
(the gateway in-process; compared byte for byte with the upstream's own stream on real sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from anygate.accounting.stream_usage import strip_null_usage
from tests.accounting.gateway import ADMIN_KEY, eventually, fake_provider_settings, running_gateway
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.inprocess import inprocess_gateway

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3)).in_memory()


@pytest.fixture
def served_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(usage=Usage(7, 3)) as up:
        yield up


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (b'data: {"id":"a","choices":[],"usage":null}\n\n', b'data: {"id":"a","choices":[]}\n\n'),
        (b'data: {"usage":null,"id":"a"}\n\n', b'data: {"id":"a"}\n\n'),
        (b'data: {"usage":null}\n\n', b"data: {}\n\n"),
        (b'data: {"id":"a", "usage" : null , "obfuscation":"x"}\n\n', b'data: {"id":"a" , "obfuscation":"x"}\n\n'),
        (b'data: { "usage": null, "id": 1 }\n\n', b'data: { "id": 1 }\n\n'),
        # Inside a string every quote is escaped: never a member, never touched.
        (b'data: {"text":"{\\"usage\\":null}","id":1}\n\n', b'data: {"text":"{\\"usage\\":null}","id":1}\n\n'),
        (b'data: {"usage":{"prompt_tokens":1}}\n\n', b'data: {"usage":{"prompt_tokens":1}}\n\n'),
        (b'data: {"usage":nullish}\n\n', b'data: {"usage":nullish}\n\n'),
    ],
)
def test_null_usage_members_are_removed_byte_for_byte(event: bytes, expected: bytes) -> None:
    assert strip_null_usage(event) == expected


def raw_stream(url: str, body: dict[str, Any], key: str) -> bytes:
    with httpx.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30) as reply:
        assert reply.status_code == 200, reply.read()
        return reply.read()


@pytest.mark.parametrize(
    ("endpoint", "request_body"),
    [("chat/completions", {"messages": MESSAGES}), ("completions", {"prompt": "hi"})],
)
@pytest.mark.sockets  # the bytes as the upstream sends them on the wire, read straight from it
def test_a_client_that_did_not_ask_gets_the_bytes_the_upstream_sends_without_asking(
    served_upstream: FakeUpstream, tmp_path: Path, endpoint: str, request_body: dict[str, Any]
) -> None:
    upstream = served_upstream
    path = f"/v1/{endpoint}"
    upstream.script(Reply(stable=True, chunks=4), Reply(stable=True, chunks=4), path=path)
    direct = raw_stream(f"{upstream.base_url}/{endpoint}", {"model": "fake-model", **request_body, "stream": True}, "k")
    assert b'"usage"' not in direct
    with running_gateway(fake_provider_settings(upstream.base_url, tmp_path)) as (base, _):
        relayed = raw_stream(f"{base}{path}", {"model": "fake/fake-model", **request_body, "stream": True}, ADMIN_KEY)
        sent = upstream.requests_to(path)[-1].json
        rows = httpx.get(base + "/v1/usage", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
    assert sent["stream_options"] == {"include_usage": True}  # anygate asked: every chunk had "usage":null
    assert relayed == direct
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["estimated_requests"]) == (7, 3, 0)


def test_an_upstream_refusing_stream_options_is_asked_once_more_without_and_never_again(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.rejected_fields = {"stream_options"}
    with (
        inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw,
        gw.sdk(ADMIN_KEY) as client,
    ):
        chunks = list(client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == upstream.content
        first = [r.json for r in upstream.requests_to(CHAT)]
        assert ["stream_options" in body for body in first] == [True, False]
        list(client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True))
        assert "stream_options" not in upstream.requests_to(CHAT)[-1].json  # remembered: asked no more
        assert len(upstream.requests_to(CHAT)) == 3
        # The client's own stream_options are the client's: the upstream's answer is passed on, not retried.
        with pytest.raises(openai.BadRequestError, match="stream_options"):
            client.chat.completions.create(
                model="fake/fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        assert len(upstream.requests_to(CHAT)) == 4

        def usage_rows() -> list[dict[str, Any]]:
            with gw.client(ADMIN_KEY) as http:
                return list(http.get("/v1/usage").json()["data"])

        # Estimating loads the vocabulary first: those requests settle a moment after they ended.
        eventually(lambda: bool(usage_rows()) and usage_rows()[0]["estimated_requests"] == 2, "two estimates")
        rows = usage_rows()
    assert rows[0]["estimated_requests"] == 2  # no usage without asking: estimated, and marked so


def test_a_request_the_upstream_refuses_for_another_reason_is_its_error(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script(Reply.error(400, "messages: bad role"), Reply.error(400, "messages: bad role"), path=CHAT)
    with (
        inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw,
        gw.sdk(ADMIN_KEY) as client,
    ):
        with pytest.raises(openai.BadRequestError, match="bad role"):
            client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True)
        list(client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True))
    # Tried once more without stream_options, failed the same way: nothing learned, still asked after.
    assert ["stream_options" in r.json for r in upstream.requests_to(CHAT)] == [True, False, True]


@pytest.mark.parametrize(
    "provider",
    [
        {"stream_usage": False},  # the provider's own setting
        {"type": "mistral", "base_url": None},  # the preset's: Mistral refuses unknown fields
    ],
)
def test_a_provider_known_not_to_take_stream_options_is_not_asked(
    upstream: FakeUpstream, tmp_path: Path, provider: dict[str, Any]
) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    fields = {**settings.providers[0].model_dump(), **provider}
    fields["base_url"] = upstream.base_url
    settings = settings.model_copy(update={"providers": [type(settings.providers[0]).model_validate(fields)]})
    with (
        inprocess_gateway(settings, upstream) as gw,
        gw.sdk(ADMIN_KEY) as client,
    ):
        list(client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True))
    assert [("stream_options" in r.json) for r in upstream.requests_to(CHAT)] == [False]


def test_the_probe_tests_streaming_and_stream_usage_apart_and_its_finding_is_followed(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.rejected_fields = {"stream_options"}
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        with gw.client(ADMIN_KEY) as http:
            probe = http.post("/v1/providers/fake/test", json={}).json()
        assert probe["streaming"]["ok"] is True
        assert probe["stream_usage"]["ok"] is False
        assert probe["stream_usage"]["error"].startswith("Upstream returned HTTP 400")
        assert probe["capabilities"]["streaming"] is True and probe["capabilities"]["stream_usage"] is False
        before = len(upstream.requests_to(CHAT))
        with gw.sdk(ADMIN_KEY) as client:
            list(client.chat.completions.create(model="fake/fake-model", messages=MESSAGES, stream=True))
    assert [("stream_options" in r.json) for r in upstream.requests_to(CHAT)[before:]] == [False]
