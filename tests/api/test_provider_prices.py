"""A provider's own prices (set in the console or the API) price its requests and show per model; health
checks and live tests say what they checked, and whether a key went with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway


def keyless(upstream: FakeUpstream, **fields: Any) -> dict[str, Any]:
    provider = fake_provider(upstream, "lab", **fields)
    del provider["api_key"]
    return {**provider, "auth": "none"}


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(1000, 500), models=["m1", "m2"]).in_memory()


def test_a_stored_providers_prices_show_per_model_and_price_its_requests(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(prices={"lab/m2": {"input": 10.0, "output": 10.0}})
    with inprocess_gateway(settings, upstream) as gw, gw.client() as client:
        created = client.post("/v1/providers", json=keyless(upstream, prices={"m1": {"input": 2.0, "output": 4.0}}))
        assert created.status_code == 201, created.text
        assert created.json()["prices"] == {"m1": {"input": 2.0, "output": 4.0}}
        listed = client.get("/v1/providers/lab/models").json()
        prices = {m["id"]: m["price"] for m in listed["data"]}
        assert prices["lab/m1"] == {"input": 2.0, "output": 4.0, "origin": "configured"}
        assert prices["lab/m2"] == {"input": 10.0, "output": 10.0, "origin": "configured"}  # the top level wins

        reply = client.post(
            "/v1/chat/completions", json={"model": "lab/m1", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert reply.status_code == 200, reply.text
        gw.run(gw.app.state.accounting.ledger.flush())
        usage = client.get("/v1/usage", params={"group_by": "model"}).json()
        assert usage["data"][0]["cost_usd"] == pytest.approx(1000 * 2e-6 + 500 * 4e-6)

        refused = client.put("/v1/providers/lab", json={"prices": {"m1": {"input": -1, "output": 1}}})
        assert refused.status_code == 400 and "prices" in refused.json()["error"]["message"]


def test_checks_say_whether_a_key_went_with_them(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = gateway_settings(keyless(upstream), fake_provider(upstream, "keyed"))
    with inprocess_gateway(settings, upstream) as gw, gw.client() as client:
        listed = {p["id"]: p for p in client.get("/v1/providers").json()["data"]}
        assert (listed["lab"]["auth"], listed["lab"]["configured"], listed["lab"]["key_set"]) == ("none", True, False)
        assert (listed["keyed"]["auth"], listed["keyed"]["key_set"]) == ("bearer", True)
        checked = {p["id"]: p for p in client.post("/v1/providers/health-check").json()["providers"]}
        assert (checked["lab"]["checked"], checked["lab"]["key_sent"], checked["lab"]["healthy"]) == (
            "models",
            False,
            True,
        )
        assert checked["keyed"]["key_sent"] is True
        probe = client.post("/v1/providers/lab/test").json()
        assert (probe["auth"], probe["key_sent"], probe["capabilities"]["chat"]) == ("none", False, True)
        assert "authorization" not in upstream.requests[-1].headers
