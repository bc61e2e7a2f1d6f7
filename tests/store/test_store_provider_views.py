"""The management views of a provider, pinned whole: a provider from the configuration, stored ones
(routed, disabled, undecryptable on this replica, failing today's checks), as an admin sees them in
``GET /v1/providers``, ``GET /v1/providers/{id}`` and the answers to ``POST`` and ``PUT``."""

from __future__ import annotations

from typing import Any

import pytest

from anygate.store.crypto import SecretBox, generate_key
from tests.store.conftest import eventually, store_directly, upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

BASE_URL = "http://upstream-1.test/v1"
IDLE = {"ejected": False, "cooling_down": False, "consecutive_failures": 0, "in_flight": 0}
TIMEOUTS = {"connect": 10.0, "first_byte": None, "idle": None, "total": 600.0}
FOUND = {"models": True, "chat": True, "streaming": True, "stream_usage": True, "embeddings": True, "responses": True}
DEFAULTS = {
    "allow_private_network": True,
    "timeout": 30.0,
    "timeouts": TIMEOUTS,
    "max_retries": 3,
    "weight": 1.0,
    "priority": 0,
    "proxy_endpoints": None,
    "quota": None,
    "stream_usage": None,
    "api": "openai",
    "responses": None,
    "via": None,
    "cloudflare_access": None,
    "proxy": None,
}


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model", "fake-embed")))


def out_of_routing(provider_id: str, name: str | None, reason: str) -> dict[str, Any]:
    return {
        "id": provider_id,
        "name": name,
        "type": "custom",
        "provider_type": "custom",
        "base_url": BASE_URL,
        "api_base": BASE_URL,
        "configured": False,
        "healthy": False,
        "default": False,
        "models": [],
        "origin": "store",
        "read_only": False,
        "unavailable": reason,
    }


def test_every_kind_of_provider_keeps_its_view(upstream, make_settings, serve) -> None:
    key_a, key_b = generate_key(), generate_key()
    campus = upstream_provider(
        "campus",
        upstream.base_url,
        name="Campus",
        api_key="sk-file-1",
        api_keys=["sk-file-2"],
        headers={"X-Tenant": "cs", "X-Api-Key": "hdr-secret"},
        default_model="fake-model",
    )
    store_directly(
        make_settings(secret_key=key_b), upstream_provider("old", upstream.base_url, name="Old", timeout=-1), None
    )
    gateway = serve(make_settings(secret_key=key_b, providers=[campus]))
    lab = upstream_provider(
        "lab",
        upstream.base_url,
        name="Lab",
        api_key="sk-lab",
        models=["fake-model"],
        headers={"Authorization": "Bearer sk-header", "X-Team": "t"},
        prices={"fake-model": {"input": 1, "output": 2}},
    )
    paused = upstream_provider("paused", upstream.base_url, api_key="sk-paused", enabled=False, models=["m1"])
    with gateway.client() as http:
        created = http.post("/v1/providers", json=lab)
        assert http.post("/v1/providers", json=paused).status_code == 201
        checked_at = http.post("/v1/providers/lab/test").json()["checked_at"]
        changed = http.put("/v1/providers/lab", json={"name": "Lab 2"})
        # Written by a replica with a newer key this one lacks: out of routing here, and why.
        store_directly(
            make_settings(secret_key=f"{key_a},{key_b}"), upstream_provider("vault", upstream.base_url), "sk"
        )

        def settled() -> bool:
            listed = http.get("/v1/providers").json()["data"]
            return len(listed) == 4 and all(p.get("models_source") in (None, "discovered") for p in listed)

        eventually(settled, "the store's providers are read and every list discovered")
        listed = http.get("/v1/providers").json()
        shown = {p: http.get(f"/v1/providers/{p}").json() for p in ("campus", "lab", "paused", "vault", "old")}
        audit = [e for e in http.get("/v1/audit").json()["data"] if e["action"] == "provider.update"]

    models = ["fake-model", "fake-embed"]
    identity = {"type": "custom", "provider_type": "custom", "base_url": BASE_URL, "api_base": BASE_URL}
    campus_live = {
        "id": "campus",
        "name": "Campus",
        **identity,
        "configured": True,
        "auth": "bearer",
        "key_set": True,
        "healthy": None,
        "default": False,
        "models": models,
        "models_source": "discovered",
        "origin": "env",
        "default_model": "fake-model",
        "read_only": True,
    }
    lab_live = {
        "id": "lab",
        "name": "Lab 2",
        **identity,
        "configured": True,
        "auth": "bearer",
        "key_set": True,
        "healthy": None,
        "default": False,
        "models": models,
        "models_source": "discovered",
        "origin": "store",
        "capabilities": {**FOUND, "checked_at": checked_at},
        "read_only": False,
    }
    mismatch = f"secret key mismatch: key id {SecretBox.from_texts([key_a], 'a').current} unknown"
    vault = out_of_routing("vault", None, mismatch)  # no name stored: the preset's comes with validation
    old = out_of_routing("old", "Old", "invalid: timeout: Input should be greater than 0")
    assert listed == {
        "object": "list",
        "data": [{**campus_live, "routing": IDLE}, {**lab_live, "routing": IDLE}, vault, old],
        "default_provider": None,
    }

    assert shown["campus"] == {
        **campus_live,
        **DEFAULTS,
        "api_key": "***",
        "api_keys": ["***"],
        "headers": {"X-Tenant": "cs", "X-Api-Key": "***"},
        "enabled": True,
        "prices": {},
    }
    lab_settings = {
        **DEFAULTS,
        "api_key": "***",
        "api_keys": [],
        "headers": {"Authorization": "***", "X-Team": "t"},
        "default_model": None,
        "enabled": True,
        "prices": {"fake-model": {"input": 1.0, "output": 2.0}},
    }
    assert shown["lab"] == {**lab_live, **lab_settings}
    assert changed.status_code == 200 and changed.json() == shown["lab"]
    assert created.status_code == 201
    not_probed = {k: v for k, v in {**lab_live, **lab_settings, "name": "Lab"}.items() if k != "capabilities"}
    assert created.json() == not_probed
    assert shown["paused"] == {
        "id": "paused",
        "name": "OpenAI Compatible",
        **identity,
        "configured": True,
        "key_set": True,
        "healthy": None,
        "default": False,
        "models": ["m1"],
        "origin": "store",
        "read_only": False,
        **DEFAULTS,
        "api_key": "***",
        "api_keys": [],
        "auth": "bearer",
        "headers": {},
        "default_model": None,
        "enabled": False,
        "prices": {},
    }
    assert shown["vault"] == vault
    assert shown["old"] == old

    # The audit log keeps the views before and after (its own masking hides every header value).
    masked = {"headers": {"Authorization": "***", "X-Team": "***"}}
    assert [(e["before"], e["after"]) for e in audit] == [
        ({**lab_live, **lab_settings, **masked, "name": "Lab"}, {**lab_live, **lab_settings, **masked})
    ]
