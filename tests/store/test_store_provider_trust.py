"""What a stored provider may carry: headers that cannot frame or split requests (refused on save, a stored
row from before skipped with a logged error), and secrets that do not follow it to another host."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from anygate.settings import Settings
from anygate.store.store import open_store
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def custom(upstream: FakeUpstream, provider_id: str = "campus", **fields: Any) -> dict[str, Any]:
    return {
        "id": provider_id,
        "type": "custom",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream-secret-1",
        "allow_private_network": True,
        "models": ["fake-model"],
        **fields,
    }


def store_directly(settings: Settings, spec: dict[str, Any], api_key: str | None) -> None:
    """Write a row as an older anygate did, without today's checks."""

    async def write() -> None:
        store = await open_store(settings)
        try:
            await store.providers.create(spec, api_key)
        finally:
            await store.close()

    asyncio.run(write())


# ------------------------------------------------------------------------------------------ headers


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"Host": "other.example"}, "headers.Host"),
        ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding"),
        ({"Content-Length": "5"}, "headers.Content-Length"),
        ({"Proxy-Authorization": "Basic x"}, "headers.Proxy-Authorization"),
        ({"X-Tenant": "cs\r\nX-Injected: secret-part"}, "headers.X-Tenant"),
        ({"Bad Name": "x"}, "headers.Bad Name"),
    ],
)
def test_a_framing_header_or_a_line_break_is_400_invalid_header(upstream, make_settings, serve, headers, param) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream, headers=headers))
        assert created.status_code == 400, created.text
        error = created.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_header", param)
        assert "secret-part" not in created.text
        assert http.get("/v1/providers/campus").status_code == 404
        assert http.post("/v1/providers", json=custom(upstream, headers={"X-Tenant": "cs"})).status_code == 201
        changed = http.put("/v1/providers/campus", json={"headers": headers})
        assert changed.status_code == 400 and changed.json()["error"]["code"] == "invalid_header"
        assert http.get("/v1/providers/campus").json()["headers"] == {"X-Tenant": "cs"}


def test_a_key_with_a_line_break_is_400(upstream, make_settings, serve) -> None:
    gateway = serve(make_settings())
    with gateway.client() as http:
        created = http.post("/v1/providers", json=custom(upstream, api_key="sk-abc\r\nX-Injected: 1"))
        assert created.status_code == 400 and created.json()["error"]["param"] == "api_key"
        created = http.post("/v1/providers", json=custom(upstream, api_keys=["sk-ok", "sk-\nbad"]))
        assert created.status_code == 400 and created.json()["error"]["param"] == "api_keys"


def test_a_stored_row_with_a_refused_header_is_skipped_with_a_logged_error(
    upstream, make_settings, serve, caplog
) -> None:
    settings = make_settings()
    bad = custom(upstream, "old", headers={"Host": "elsewhere.example", "X-Tenant": "cs\r\nX-Injected: secret-part"})
    bad.pop("api_key")
    store_directly(settings, bad, "sk-upstream-secret-1")
    with caplog.at_level(logging.ERROR, logger="anygate.store"):
        gateway = serve(settings)
    assert any(r.getMessage() == "stored provider skipped" for r in caplog.records)
    assert "secret-part" not in caplog.text
    with gateway.client() as http:
        assert http.post("/v1/providers", json=custom(upstream)).status_code == 201
        with gateway.sdk() as sdk:  # the other providers are served
            assert sdk.chat.completions.create(model="campus/fake-model", messages=HI).choices
        listed = {p["id"]: p for p in http.get("/v1/providers").json()["data"]}
        assert listed["old"]["unavailable"].startswith("invalid: headers: header Host:")
        shown = http.get("/v1/providers/old")
        assert shown.status_code == 200 and shown.json()["unavailable"].startswith("invalid: headers")
        assert "secret-part" not in http.get("/v1/providers").text + shown.text
        assert http.post("/v1/providers/old/test").json()["error"]["code"] == "invalid_stored_provider"
        fixed = http.put("/v1/providers/old", json={"headers": {"X-Tenant": "cs"}})
        assert fixed.status_code == 200, fixed.text
        assert "unavailable" not in fixed.json()
        with gateway.sdk() as sdk:
            assert sdk.chat.completions.create(model="old/fake-model", messages=HI).choices
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["x-tenant"] == "cs"
