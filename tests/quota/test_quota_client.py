"""The quota client against a real local server: request rules, every error string, key sources, the CLI."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from typer.testing import CliRunner

from anygate.cli import app as cli_app
from anygate.quota.client import (
    QuotaFetchError,
    Source,
    fetch_quota,
    key_status,
    poll_sources,
    read_user_config,
    resolve_key,
)
from anygate.settings import load_settings
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.fake_upstream import FakeUpstream

KEY = "sk-test-quota-key-0123456789abcdef"
SEEN: list[dict[str, str]] = []


async def answer(request: web.Request) -> web.StreamResponse:
    """One route per behaviour; every request's headers are recorded."""
    SEEN.append(dict(request.headers))
    kind = request.match_info["kind"]
    if kind == "ok":
        return web.json_response({"tokens": {"limit": 100, "used": 25, "remaining": 75}})
    if kind == "redirect":
        raise web.HTTPFound("/ok")
    if kind == "status":
        return web.json_response({"error": f"bad key {KEY}"}, status=401)
    if kind == "server-error":
        return web.Response(status=503, text="down")
    if kind == "html":
        return web.Response(text=f"<html>{KEY}</html>", content_type="text/html")
    if kind == "broken":
        return web.Response(text='{"tokens": {', content_type="application/json")
    if kind == "huge-declared":
        return web.Response(body=b"[" + b"1," * 140000 + b"1]", content_type="application/json")
    if kind == "huge-chunked":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b" " * 8192)
        await response.write(b"{}")
        return response
    if kind == "slow-body":
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"tokens":')
        await asyncio.sleep(30)
        return response
    if kind == "slow":
        await asyncio.sleep(30)
    if kind == "shape":
        return web.json_response({"quota": 5})
    if kind == "echo-key":
        return web.json_response({"key": KEY, "cost": {"limit": 1, "used": 0}})
    if kind == "echo-fields":
        tokens = {"limit": 10, "used": 1, "resets_at": f"Bearer {KEY}"}
        return web.json_response({"tokens": tokens, "cost": {"currency": KEY, "limit": 1, "used": 0, "resets_at": KEY}})
    if kind == "odd-fields":
        tokens = {"limit": 10, "used": 1, "resets_at": "2026-12-01T02:00:00+02:00"}
        return web.json_response({"tokens": tokens, "cost": {"currency": "eur", "limit": 1, "used": 0}})
    raise web.HTTPNotFound()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    SEEN.clear()
    app = web.Application()
    app.router.add_get("/gw/{kind}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/gw/"
    await runner.cleanup()


async def fetch(base: str, kind: str, timeout: float = 5.0) -> Any:
    transport = AiohttpTransport()
    try:
        return await fetch_quota(transport, Source("gw", base, kind, "neutral", "gw"), KEY, timeout)
    finally:
        await transport.aclose()


@pytest.mark.sockets
async def test_request_carries_bearer_and_accept_and_joins_with_one_slash(server: str) -> None:
    quota = await fetch(server, "/ok")
    assert quota.tokens is not None and quota.tokens.remaining == 75
    assert SEEN[0]["Authorization"] == f"Bearer {KEY}"
    assert SEEN[0]["Accept"] == "application/json"
    assert len(SEEN) == 1


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("status", "HTTP 401"),
        ("server-error", "HTTP 503"),
        ("missing", "HTTP 404"),
        ("redirect", "Redirect rejected"),
        ("html", "Expected a JSON response"),
        ("broken", "Invalid JSON response"),
        ("huge-declared", "Response exceeded 262144 bytes"),
        ("huge-chunked", "Response exceeded 262144 bytes"),
        ("shape", "unexpected shape"),
    ],
)
@pytest.mark.sockets
async def test_every_failure_has_its_contract_message_without_the_key(server: str, kind: str, message: str) -> None:
    with pytest.raises(QuotaFetchError) as caught:
        await fetch(server, kind)
    assert str(caught.value) == message
    assert KEY not in repr(caught.value)


@pytest.mark.sockets
async def test_strings_a_source_echoes_are_validated_and_never_carry_the_key(server: str) -> None:
    echoed = await fetch(server, "echo-fields")
    assert KEY not in json.dumps(echoed.as_dict())
    assert echoed.cost is not None and echoed.cost.currency == "XXX" and echoed.cost.resets_at is None
    assert echoed.tokens is not None and echoed.tokens.resets_at is None
    odd = await fetch(server, "odd-fields")
    assert odd.cost is not None and odd.cost.currency == "EUR"
    assert odd.tokens is not None and odd.tokens.resets_at == "2026-12-01T00:00:00Z"


@pytest.mark.sockets
async def test_a_connection_failure_says_so_without_the_key_or_the_url() -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(QuotaFetchError) as caught:
        await fetch(f"http://127.0.0.1:{port}/", "quota")
    assert str(caught.value) == "Connection failed"


@pytest.mark.sockets
async def test_a_redirect_is_not_followed(server: str) -> None:
    with pytest.raises(QuotaFetchError, match="Redirect rejected"):
        await fetch(server, "redirect")
    assert len(SEEN) == 1


@pytest.mark.parametrize("kind", ["slow", "slow-body"])
@pytest.mark.sockets
async def test_the_timeout_covers_headers_and_body(server: str, kind: str) -> None:
    with pytest.raises(QuotaFetchError) as caught:
        await fetch(server, kind, timeout=0.2)
    assert str(caught.value) == "Request timeout after 0.2s"


async def test_default_timeout_message_says_5s() -> None:
    from anygate.quota.client import DEFAULT_TIMEOUT

    assert DEFAULT_TIMEOUT == 5.0
    assert f"Request timeout after {DEFAULT_TIMEOUT:g}s" == "Request timeout after 5s"


# ------------------------------------------------------------------------------------------ key sources


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "config" / "anygate").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    return tmp_path


def environ(home: Path, **extra: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(home / "config"), "ANYGATE_DATA_DIR": str(home / "data"), **extra}


def write_user_config(home: Path, sources: list[dict[str, Any]]) -> None:
    (home / "config" / "anygate" / "config.yaml").write_text(json.dumps({"quota_sources": sources}))


def write_auth_json(home: Path, entries: dict[str, Any]) -> None:
    (home / "data" / "auth.json").write_text(json.dumps(entries))


def source(source_id: str, base_url: str = "http://x") -> Source:
    return Source(source_id, base_url, "/quota", "neutral", source_id)


def test_key_comes_from_env_first_then_global_config_then_auth_json(home: Path) -> None:
    write_user_config(home, [{"id": "my-gateway", "base_url": "http://x", "api_key": "from-config"}])
    write_auth_json(home, {"my-gateway": {"type": "api", "key": "from-auth"}})

    settings = load_settings(environ=environ(home, MY_GATEWAY_API_KEY="from-env"))
    user = read_user_config(settings.user_config_file)
    from_env = resolve_key(settings, source("my-gateway"), user)
    assert (from_env.key, from_env.source) == ("from-env", "env")
    settings = load_settings(environ=environ(home))
    assert resolve_key(settings, source("my-gateway"), user).source == "config"
    assert resolve_key(settings, source("my-gateway"), user).key == "from-config"
    assert resolve_key(settings, source("my-gateway"), []).source == "auth.json"
    assert resolve_key(settings, source("my-gateway"), []).key == "from-auth"
    missing = resolve_key(settings, source("other"), user)
    assert (missing.key, missing.source) == (None, "(none)")
    assert missing.checked == (
        "env:OTHER_API_KEY",
        str(home / "config" / "anygate" / "config.yaml"),
        str(home / "data" / "auth.json"),
    )
    assert "from-" not in repr(missing) + repr(resolve_key(settings, source("my-gateway"), user))


def test_project_local_config_is_not_trusted_for_keys(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "anygate.yaml"
    project.write_text(json.dumps({"quota_sources": [{"id": "gw", "base_url": "http://x", "api_key": "local"}]}))
    settings = load_settings(environ=environ(home, ANYGATE_CONFIG=str(project)))
    assert [s.id for s in settings.quota_sources] == ["gw"]
    assert resolve_key(settings, source("gw"), []).source == "(none)"


def test_a_global_key_goes_only_to_the_base_url_of_its_own_entry(home: Path) -> None:
    write_user_config(home, [{"id": "gw", "base_url": "http://global.example/v1/", "api_key": "from-config"}])
    settings = load_settings(environ=environ(home))
    user = read_user_config(settings.user_config_file)
    assert resolve_key(settings, source("gw", "http://global.example/v1"), user).source == "config"
    elsewhere = resolve_key(settings, source("gw", "http://project.example/v1"), user)
    assert (elsewhere.key, elsewhere.source) == (None, "(none)")


def test_auth_json_entries_of_other_types_or_broken_files_give_no_key(home: Path) -> None:
    settings = load_settings(environ=environ(home))
    write_auth_json(home, {"gw": {"type": "oauth", "key": "x"}})
    assert resolve_key(settings, source("gw"), []).key is None
    (home / "data" / "auth.json").write_text("{not json")
    assert resolve_key(settings, source("gw"), []).key is None


def test_status_reports_sources_and_key_origin_never_the_key(home: Path) -> None:
    write_user_config(
        home,
        [
            {"id": "campus", "base_url": "http://campus/v1", "api_key": "sk-config-secret"},
            {"id": "lab", "base_url": "http://lab", "quota_path": "/key/info", "format": "litellm"},
        ],
    )
    settings = load_settings(environ=environ(home, OPENROUTER_API_KEY="sk-or-env-secret"))
    rows = key_status(settings)
    by_id = {row["provider_id"]: row for row in rows}
    assert by_id["openrouter"]["quota_path"] == "/key"
    assert by_id["openrouter"]["api_key_source"] == "env"
    assert by_id["campus"]["api_key_source"] == "config"
    assert by_id["campus"]["api_key_configured"] is True
    assert by_id["lab"] == {
        "provider_id": "lab",
        "quota_path": "/key/info",
        "api_key_configured": False,
        "api_key_source": "(none)",
        "api_key_checked_paths": ["env:LAB_API_KEY", *by_id["lab"]["api_key_checked_paths"][1:]],
    }
    assert "secret" not in json.dumps(rows)


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    return {**environ(home), "HOME": str(home), **extra}


@pytest.mark.sockets
def test_cli_polls_every_source_and_never_prints_a_key(home: Path, upstream: FakeUpstream) -> None:
    write_user_config(
        home,
        [
            {"id": "neutral-gw", "base_url": upstream.base_url, "label": "Campus", "api_key": "sk-user-secret-1"},
            {"id": "or-gw", "base_url": upstream.base_url, "quota_path": "/key", "format": "openrouter"},
            {"id": "down-gw", "base_url": upstream.base_url, "quota_path": "/nothing-here"},
            {"id": "keyless-gw", "base_url": upstream.base_url},
        ],
    )
    write_auth_json(home, {"down-gw": {"type": "api", "key": "sk-auth-secret-3"}})
    env = cli_env(home, OR_GW_API_KEY="sk-env-secret-2")
    result = CliRunner().invoke(cli_app, ["quota"], env=env)
    assert result.exit_code == 0, result.output
    assert "95% left (250K/5M)" in result.output
    assert "$0.42 / $5.00" in result.output
    assert "$0.42 / $10.00" in result.output  # the OpenRouter shape, monthly window
    assert "HTTP 404" in result.output
    assert "skipped: no API key" in result.output
    assert "secret" not in result.output
    auths = [r.headers.get("authorization") for r in upstream.requests]
    assert sorted(a for a in auths if a) == [
        "Bearer sk-auth-secret-3",
        "Bearer sk-env-secret-2",
        "Bearer sk-user-secret-1",
    ]

    as_json = CliRunner().invoke(cli_app, ["quota", "--json"], env=env)
    results = {entry["id"]: entry for entry in json.loads(as_json.output)}
    assert results["neutral-gw"]["tokens"] == {
        "limit": 5000000,
        "used": 250000,
        "remaining": 4750000,
        "resets_at": None,
    }
    assert results["or-gw"]["cost"]["remaining"] == 9.58
    assert results["down-gw"]["error"] == "HTTP 404"
    assert results["keyless-gw"]["skipped"] == "no API key"
    assert "secret" not in as_json.output


@pytest.mark.sockets
def test_a_project_config_reusing_a_global_id_never_receives_the_global_key(
    home: Path, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.env`` in the working directory names a project file whose source has the id of a global one."""
    monkeypatch.chdir(tmp_path)
    global_url = "http://global-gateway.invalid/v1"
    write_user_config(home, [{"id": "campus", "base_url": global_url, "api_key": "sk-global-secret"}])
    project = tmp_path / "project.yaml"
    project.write_text(json.dumps({"quota_sources": [{"id": "campus", "base_url": upstream.base_url}]}))
    (tmp_path / ".env").write_text(f"ANYGATE_CONFIG={project}\n")
    result = CliRunner().invoke(cli_app, ["quota"], env=cli_env(home))
    assert result.exit_code == 0, result.output
    assert "skipped: no API key" in result.output
    assert all("sk-global-secret" not in str(r.headers) for r in upstream.requests)
    status = CliRunner().invoke(cli_app, ["quota", "status", "--json"], env=cli_env(home))
    assert json.loads(status.output)[0]["api_key_source"] == "(none)"
    # A key from the environment follows the contract: it goes to the source the config names.
    with_env = CliRunner().invoke(cli_app, ["quota"], env=cli_env(home, CAMPUS_API_KEY="sk-env-campus"))
    assert "95% left" in with_env.output
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-env-campus"


def test_cli_status(home: Path) -> None:
    write_user_config(home, [{"id": "campus", "base_url": "http://campus/v1", "api_key": "sk-config-secret"}])
    result = CliRunner().invoke(cli_app, ["quota", "status"], env=cli_env(home))
    assert result.exit_code == 0, result.output
    assert "provider_id: campus" in result.output
    assert "quota_path: /quota" in result.output
    assert "api_key_configured: true" in result.output
    assert "api_key_source: config" in result.output
    assert "api_key_checked_paths: env:CAMPUS_API_KEY" in result.output
    assert "secret" not in result.output
    as_json = json.loads(CliRunner().invoke(cli_app, ["quota", "status", "--json"], env=cli_env(home)).output)
    assert as_json[0]["api_key_source"] == "config"


def test_cli_status_keeps_long_paths_on_one_line_in_80_columns(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 4)
    (deep / "config" / "anygate").mkdir(parents=True)
    (deep / "data").mkdir()
    write_user_config(deep, [{"id": "campus", "base_url": "http://campus/v1"}])
    result = CliRunner().invoke(cli_app, ["quota", "status"], env={**cli_env(deep), "COLUMNS": "80"})
    line = next(line for line in result.output.splitlines() if "api_key_checked_paths" in line)
    assert line.endswith(str(deep / "data" / "auth.json")), result.output


@pytest.mark.sockets
async def test_poll_sources_skips_sources_without_a_key(home: Path, server: str) -> None:
    write_user_config(home, [{"id": "gw", "base_url": server, "quota_path": "ok"}])
    settings = load_settings(environ=environ(home))
    (result,) = await poll_sources(settings)
    assert result.skipped and not SEEN
    settings = load_settings(environ=environ(home, GW_API_KEY=KEY))
    (result,) = await poll_sources(settings)
    assert result.quota is not None and result.quota.tokens is not None


@pytest.mark.sockets
async def test_poll_sources_go_through_the_ssrf_guard(home: Path, server: str) -> None:
    """Loopback is reached by default (the user's own gateway), refused when the source says so; the
    refused poll never reaches the server."""
    refused = {"id": "gw", "base_url": server, "quota_path": "ok", "allow_private_network": False}
    write_user_config(home, [refused])
    settings = load_settings(environ=environ(home, GW_API_KEY=KEY))
    (result,) = await poll_sources(settings)
    assert result.error is not None and not SEEN
    assert result.error.startswith("URL refused: address 127.0.0.1 is on a loopback or private network")
    write_user_config(home, [{**refused, "allow_private_network": True}])
    (result,) = await poll_sources(load_settings(environ=environ(home, GW_API_KEY=KEY)))
    assert result.error is None and SEEN
