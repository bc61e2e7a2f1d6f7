"""The read-only views: /v1/models, /v1/models/{id}, /v1/providers, /v1/providers/{id}/models (the gateway
in-process, its upstreams in memory)."""

from __future__ import annotations

from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream, Reply, priced_model
from tests.support.gateway import PROVIDER_KEY, fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway


def dead_provider(provider_id: str, **fields: object) -> dict[str, object]:
    """A provider at an origin nothing answers at (``FakeNetwork`` refuses the connection)."""
    return {
        "id": provider_id,
        "type": "custom",
        "base_url": f"http://{provider_id}.test/v1",
        "api_key": PROVIDER_KEY,
        "allow_private_network": True,
        "max_retries": 0,
        **fields,
    }


def test_models_and_providers_views() -> None:
    network = FakeNetwork()
    up = network.add(FakeUpstream(models=[priced_model("anthropic/claude-3.5-sonnet"), "plain"]))
    settings = gateway_settings(
        fake_provider(up, models=["configured-only"]),
        dead_provider("dead", models=["fallback-model"]),
        dead_provider("unknown"),
        default_provider="fake",
    )
    with inprocess_gateway(settings, transport=network) as gw, gw.client() as client:
        models = client.get("/v1/models").json()
        providers = client.get("/v1/providers")
        fake_models = client.get("/v1/providers/fake/models").json()
        dead_models = client.get("/v1/providers/dead/models").json()
        unknown_models = client.get("/v1/providers/unknown/models").json()
        one = client.get("/v1/models/fake/anthropic/claude-3.5-sonnet")
        bare = client.get("/v1/models/plain")

    assert models["object"] == "list"
    ids = {m["id"]: m for m in models["data"]}
    assert set(ids) == {
        "fake/anthropic/claude-3.5-sonnet",
        "fake/plain",
        "fake/configured-only",
        "dead/fallback-model",
    }
    assert all(m["owned_by"] == m["id"].split("/")[0] and m["object"] == "model" for m in models["data"])
    assert ids["fake/anthropic/claude-3.5-sonnet"]["pricing"] == {"prompt": "0.000001", "completion": "0.000002"}
    assert ids["fake/anthropic/claude-3.5-sonnet"]["context_length"] == 8192

    assert one.status_code == 200 and one.json()["id"] == "fake/anthropic/claude-3.5-sonnet"
    assert bare.status_code == 200 and bare.json()["id"] == "fake/plain"

    assert providers.status_code == 200
    assert PROVIDER_KEY not in providers.text
    body = providers.json()
    assert body["object"] == "list" and body["default_provider"] == "fake"
    by_id = {p["id"]: p for p in body["data"]}
    assert list(by_id) == ["fake", "dead", "unknown"]
    for view in by_id.values():
        assert {"id", "name", "type", "base_url", "configured", "healthy", "default", "models"} <= set(view)
        assert "api_key" not in view and "headers" not in view
    assert by_id["fake"]["default"] is True and by_id["dead"]["default"] is False
    assert by_id["fake"]["configured"] is True
    assert by_id["fake"]["base_url"] == up.base_url
    assert by_id["dead"]["models"] == ["fallback-model"]

    assert fake_models["provider"] == "fake" and fake_models["object"] == "list"
    assert {m["id"] for m in fake_models["data"]} == {
        "fake/anthropic/claude-3.5-sonnet",
        "fake/plain",
        "fake/configured-only",
    }
    # A bug once: a failed listing is not an empty list: the configured list, with the error.
    assert [m["id"] for m in dead_models["data"]] == ["dead/fallback-model"]
    assert dead_models.get("error")
    assert unknown_models["data"] == [] and unknown_models.get("error")


def test_unknown_provider_models_is_404() -> None:
    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up)), up) as gw:
        with gw.client() as client:
            response = client.get("/v1/providers/nope/models")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_a_provider_without_a_key_is_listed_as_not_configured() -> None:
    up = FakeUpstream().in_memory()
    up.script(Reply.error(401, "no key"), path="/v1/models")
    settings = gateway_settings(fake_provider(up, api_key=None), fake_provider(up, "open", auth="none", api_key=None))
    with inprocess_gateway(settings, up) as gw, gw.client() as client:
        by_id = {p["id"]: p for p in client.get("/v1/providers").json()["data"]}
    assert by_id["fake"]["configured"] is False
    assert by_id["open"]["configured"] is True


def test_env_provider_and_its_alias_in_the_views() -> None:
    from anygate.settings import load_settings

    up = FakeUpstream().in_memory()
    env = {
        "OPENROUTER_API_KEY": PROVIDER_KEY,
        "OPENROUTER_BASE_URL": up.base_url,
        "PREFERRED_PROVIDER": "openai_compatible",
        "OPENAI_COMPATIBLE_DEFAULT_MODEL": "fake-model",
        "ANYGATE_ADMIN_KEY": "admin-key-for-views",
        "ANYGATE_DATA_DIR": "data",
    }
    with inprocess_gateway(load_settings({}, env), up) as gw, gw.client(key="admin-key-for-views") as client:
        providers = client.get("/v1/providers").json()
        aliased = client.get("/v1/providers/openai_compatible/models")
        chat = client.post("/v1/chat/completions", json={"model": "openai_compatible:fake-model", "messages": []})
    assert providers["default_provider"] == "openrouter"
    assert [p["id"] for p in providers["data"]] == ["openrouter"]
    assert providers["data"][0]["default_model"] == "fake-model"
    assert aliased.status_code == 200 and aliased.json()["provider"] == "openrouter"
    assert chat.status_code == 200


def test_views_are_filtered_to_what_the_key_may_use() -> None:
    from anygate.auth import Principal, hash_key

    up = FakeUpstream(models=["allowed-model", "other-model"]).in_memory()
    settings = gateway_settings(fake_provider(up), fake_provider(up, "second"))
    with inprocess_gateway(settings, up) as gw:
        limited = Principal(key_id="k1", is_admin=False, models=("fake/allowed-*",), providers=("fake",))
        gw.app.state.keyring.add(hash_key("limited-key"), limited)
        with gw.client(key="limited-key") as client:
            models = [m["id"] for m in client.get("/v1/models").json()["data"]]
            providers = [p["id"] for p in client.get("/v1/providers").json()["data"]]
            denied = client.post("/v1/chat/completions", json={"model": "fake/other-model", "messages": []})
            allowed = client.post("/v1/chat/completions", json={"model": "allowed-model", "messages": []})
            proxy_denied = client.post("/proxy/second/v1/chat/completions", json={"model": "x", "messages": []})
            hidden = client.get("/v1/providers/second/models")
    assert models == ["fake/allowed-model"]
    assert providers == ["fake"]
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    assert allowed.status_code == 200
    assert proxy_denied.status_code == 403
    assert hidden.status_code == 404


def health_samples(client: object) -> dict[str, float]:
    """``anygate_provider_healthy`` by provider, from ``/metrics``."""
    text = client.get("/metrics").text  # type: ignore[attr-defined]
    samples = {}
    for line in text.splitlines():
        if line.startswith("anygate_provider_healthy{"):
            labels, value = line.rsplit(" ", 1)
            samples[labels.split('provider="', 1)[1].split('"', 1)[0]] = float(value)
    return samples


def test_every_provider_has_a_health_sample_from_start_up() -> None:
    network = FakeNetwork()
    up = network.add(FakeUpstream())
    settings = gateway_settings(fake_provider(up), dead_provider("dead"))
    with inprocess_gateway(settings, transport=network) as gw, gw.client() as client:
        assert health_samples(client) == {"fake": -1.0, "dead": -1.0}  # registered, not checked yet
        assert client.post("/v1/providers/health-check").status_code == 200
        assert health_samples(client) == {"fake": 1.0, "dead": 0.0}
        stored = {"id": "later", "type": "custom", "base_url": up.base_url, "allow_private_network": True}
        assert client.post("/v1/providers", json=stored).status_code == 201
        assert health_samples(client) == {"fake": 1.0, "dead": 0.0, "later": -1.0}
        assert client.delete("/v1/providers/later").status_code == 200
        assert health_samples(client) == {"fake": 1.0, "dead": 0.0}


def test_public_readiness_names_nothing_and_the_admin_key_sees_the_detail() -> None:
    from anygate.auth import Principal, hash_key
    from anygate.errors import NotReady

    async def failing() -> None:
        raise NotReady("secret key mismatch: key id 142d7432 unknown (cannot decrypt provider 'campus')")

    up = FakeUpstream().in_memory()
    with inprocess_gateway(gateway_settings(fake_provider(up, "campus")), up) as gw:
        gw.app.state.keyring.add(hash_key("user-key"), Principal(key_id="u1", is_admin=False))
        with gw.client(key=None) as bare, gw.client(key="user-key") as user, gw.client() as admin:
            public = [bare.get("/health/ready"), user.get("/health/ready")]
            detail = admin.get("/health/ready")
            gw.app.state.readiness.add("secrets", failing)
            public_failing = [bare.get("/health/ready"), user.get("/health/ready")]
            detail_failing = admin.get("/health/ready")
    assert [(r.status_code, r.json()) for r in public] == [(200, {"status": "ready"})] * 2
    assert [(r.status_code, r.json()) for r in public_failing] == [(503, {"status": "not_ready"})] * 2
    assert detail.status_code == 200 and detail.json()["checks"]["store"] == "ok"
    assert detail.json()["providers"]["campus"]["healthy"] in (True, None)
    assert detail_failing.status_code == 503
    assert detail_failing.json()["error"]["code"] == "not_ready"
    assert "provider 'campus'" in detail_failing.json()["error"]["message"]


def test_the_root_leads_a_browser_to_the_console_without_a_key_and_without_naming_a_host() -> None:
    with inprocess_gateway(gateway_settings()) as gw, gw.client(key=None) as browser:
        opened = browser.get("/", headers={"Host": "evil.example"})
        probed = browser.head("/")
        console = browser.get(opened.headers["location"])
    assert opened.status_code == 307
    assert opened.headers["location"] == "/ui/"
    assert opened.headers["x-frame-options"] == "DENY"
    assert probed.status_code == 307
    assert console.status_code == 200 and "text/html" in console.headers["content-type"]
