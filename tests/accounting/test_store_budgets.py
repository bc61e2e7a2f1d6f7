"""Budgets on keys and users made through the management API (``POST /v1/users``, ``POST /v1/keys``),
enforced end to end: the gateway in-process, the fake upstream in memory, the openai SDK as client (a Redis
that lost its counters is the real server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tests.accounting.conftest import REDIS, unavailable
from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt
from tests.support.waiting import eventually

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"
PRICES = {"fake/fake-model": {"input": 1_000_000, "output": 1_000_000}}  # $1 a token: easy sums


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3)).in_memory()


def admin(gw: InProcessGateway, method: str, path: str, body: Any = None, key: str = ADMIN_KEY) -> Any:
    with gw.client(key) as http:
        reply = http.request(method, path, json=body)
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def new_key(gw: InProcessGateway, **fields: Any) -> dict[str, Any]:
    return admin(gw, "POST", "/v1/keys", {"alias": "student-1", **fields})  # type: ignore[no-any-return]


def chat(gw: InProcessGateway, key: str, **extra: Any) -> Any:
    with gw.sdk(key) as client:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)


def test_a_hard_usd_budget_refuses_a_model_without_a_price(upstream: FakeUpstream, tmp_path: Path) -> None:
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        hard = new_key(gw, budget={"usd": 5, "period": "daily"})
        with pytest.raises(openai.PermissionDeniedError) as refused:
            chat(gw, hard["key"])
        error = refused.value.body
        assert isinstance(error, dict) and error["code"] == "price_unknown" and error["param"] == "model"
        assert "fake-model" in error["message"]
        assert upstream.requests_to("/v1/chat/completions") == []
        soft = new_key(gw, budget={"usd": 5, "period": "daily", "mode": "soft"})
        chat(gw, soft["key"])  # a soft budget never refuses
        tokens_only = new_key(gw, budget={"tokens": 1000, "period": "daily"})
        chat(gw, tokens_only["key"])
    assert len(upstream.requests_to("/v1/chat/completions")) == 2


def test_an_admin_may_let_unpriced_models_through_a_usd_budget(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, allow_unpriced_under_usd_budget=True)
    with inprocess_gateway(settings, upstream) as gw:
        key = new_key(gw, budget={"usd": 5, "period": "daily"})
        chat(gw, key["key"])
        assert admin(gw, "GET", "/v1/quota", key=key["key"])["cost"]["used"] == 0


def test_byok_spend_is_never_held_by_the_keys_usd_budget(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices=PRICES)
    with inprocess_gateway(settings, upstream) as gw:
        key = new_key(gw, budget={"usd": 10, "period": "daily"})["key"]
        chat(gw, key)  # 10 tokens at $1: the budget is spent
        with pytest.raises(openai.RateLimitError):
            chat(gw, key)
        admin(gw, "PUT", "/auth/creds", {"providers": {"fake": {"apiKey": "sk-own-upstream-key"}}}, key=key)
        chat(gw, key, max_tokens=500)  # paid with the caller's own key: neither refused nor clamped
        sent = upstream.requests_to("/v1/chat/completions")[-1]
        assert sent.headers["authorization"] == "Bearer sk-own-upstream-key"
        assert sent.json["max_tokens"] == 500
        data = admin(gw, "GET", "/api/v1/key", key=key)["data"]
    assert (data["limit"], data["limit_remaining"], data["include_byok_in_limit"]) == (10, 0, False)
    assert data["usage_daily"] == 10 and data["byok_usage_daily"] == 10


def test_a_token_budget_still_holds_byok_requests(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices=PRICES)
    with inprocess_gateway(settings, upstream) as gw:
        key = new_key(gw, budget={"tokens": 12, "usd": 1000, "period": "daily"})["key"]
        admin(gw, "PUT", "/auth/creds", {"providers": {"fake": {"apiKey": "sk-own-upstream-key"}}}, key=key)
        chat(gw, key)
        with pytest.raises(openai.RateLimitError):
            chat(gw, key)


def test_every_quota_shape_shows_the_budget_that_binds_in_both_units(upstream: FakeUpstream, tmp_path: Path) -> None:
    """The user's daily token budget binds (it has least left), the key's own monthly USD budget binds cost."""
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices=PRICES)
    with inprocess_gateway(settings, upstream) as gw:
        user = admin(gw, "POST", "/v1/users", {"name": "comp318", "budget": {"tokens": 20, "period": "daily"}})
        key = new_key(gw, user_id=user["id"], budget={"tokens": 1000, "usd": 100, "period": "monthly"})["key"]
        chat(gw, key)
        chat(gw, key)
        with pytest.raises(openai.RateLimitError) as refused:
            chat(gw, key)
        assert "user" in refused.value.message
        neutral = admin(gw, "GET", "/v1/quota", key=key)
        openrouter = admin(gw, "GET", "/api/v1/key", key=key)["data"]
        litellm = admin(gw, "GET", "/key/info", key=key)["info"]
    tokens = neutral["tokens"]
    assert (tokens["limit"], tokens["used"], tokens["remaining"]) == (20, 20, 0)
    assert tokens["resets_at"].endswith("T00:00:00Z")
    assert neutral["cost"] == {"currency": "USD", "limit": 100, "used": 20, "remaining": 80}
    assert (openrouter["limit"], openrouter["limit_remaining"], openrouter["limit_reset"]) == (100, 80, "monthly")
    assert (litellm["max_budget"], litellm["spend"], litellm["budget_duration"]) == (100, 20, "1mo")
    assert litellm["budget_reset_at"].endswith("-01T00:00:00Z")


def test_a_budget_in_one_unit_still_reports_the_other(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, prices={"fake/*": {"input": 1, "output": 2}})
    with inprocess_gateway(settings, upstream) as gw:
        tokens_only = new_key(gw, budget={"tokens": 1000, "period": "daily"})["key"]
        usd_only = new_key(gw, budget={"usd": 5, "period": "weekly"})["key"]
        chat(gw, tokens_only)
        chat(gw, usd_only)
        by_tokens = admin(gw, "GET", "/v1/quota", key=tokens_only)
        by_usd = admin(gw, "GET", "/v1/quota", key=usd_only)
        litellm = admin(gw, "GET", "/key/info", key=tokens_only)["info"]
    cost = (7 * 1 + 3 * 2) / 1_000_000
    assert by_tokens["cost"] == {"currency": "USD", "limit": None, "used": cost, "remaining": None}
    assert litellm["spend"] == cost and litellm["max_budget"] is None
    assert by_usd["tokens"]["used"] == 10 and by_usd["tokens"]["limit"] is None
    assert by_usd["cost"]["used"] == cost


PROMPT = estimate_prompt({"messages": MESSAGES})


def spend_twenty_tokens_then_restart(upstream: FakeUpstream, tmp_path: Path, **settings: Any) -> tuple[str, str]:
    """A key with 25 tokens a day and a user with 1000: 20 used, then the gateway stops."""
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        user = admin(gw, "POST", "/v1/users", {"name": "course", "budget": {"tokens": 1000, "period": "daily"}})
        key = new_key(gw, user_id=user["id"], budget={"tokens": 25, "period": "daily"})["key"]
        other = new_key(gw, user_id=user["id"])["key"]  # no budget of its own: its user's binds
        chat(gw, key)
        chat(gw, key)
    return key, other


@pytest.mark.parametrize("limiter", ["memory", "sql"])
def test_a_restart_resets_no_budget(upstream: FakeUpstream, tmp_path: Path, limiter: str) -> None:
    """Counters come back from the usage ledger: in memory at start; in the database as rows are made
    (here the first run counted in memory, the second in the database)."""
    key, other = spend_twenty_tokens_then_restart(upstream, tmp_path)
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, limiter=limiter), upstream) as gw:
        tokens = admin(gw, "GET", "/v1/quota", key=key)["tokens"]
        assert (tokens["used"], tokens["remaining"]) == (20, 5)
        assert admin(gw, "GET", "/v1/quota", key=other)["tokens"] | {"resets_at": None} == {
            "limit": 1000, "used": 20, "remaining": 980, "resets_at": None
        }  # fmt: skip
        chat(gw, key, max_tokens=100)
        assert upstream.requests_to("/v1/chat/completions")[-1].json["max_tokens"] == 25 - 20 - PROMPT
        with pytest.raises(openai.RateLimitError):
            chat(gw, key)


@pytest.mark.parametrize("limiter", ["memory", "sql"])
def test_a_budget_given_to_a_key_mid_day_counts_what_it_used_before(
    upstream: FakeUpstream, tmp_path: Path, limiter: str
) -> None:
    """The key spends 20 tokens with no budget (nothing counts them but the ledger), then gets 25 a day:
    its first request under the budget is clamped to the 5 left, the next refused."""
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, limiter=limiter), upstream) as gw:
        made = new_key(gw)
        chat(gw, made["key"])
        chat(gw, made["key"])
        admin(gw, "PATCH", f"/v1/keys/{made['id']}", {"budget": {"tokens": 25, "period": "daily"}})
        wait_for_budget(gw, made["key"], limit=25)
        chat(gw, made["key"], max_tokens=100)
        assert upstream.requests_to("/v1/chat/completions")[-1].json["max_tokens"] == 25 - 20 - PROMPT
        with pytest.raises(openai.RateLimitError):
            chat(gw, made["key"])


def wait_for_budget(gw: InProcessGateway, key: str, limit: int) -> None:
    """Key changes reach the request path within a store poll."""
    eventually(lambda: admin(gw, "GET", "/v1/quota", key=key)["tokens"]["limit"] == limit, "the budget applies")


@pytest.mark.services
def test_a_redis_that_lost_its_counters_rebuilds_them_from_the_ledger(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, redis_url=REDIS)
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at 127.0.0.1:6379 ({type(exc).__name__})")
    with inprocess_gateway(settings, upstream) as gw:
        created = new_key(gw, budget={"tokens": 20, "period": "daily"})
        key, key_id = created["key"], created["id"]
        chat(gw, key)
        chat(gw, key)
        names = list(client.scan_iter(match=f"anygate:{{budget:key:{key_id}:*"))
        assert names
        client.delete(*names)  # what a Redis restart does to counters it kept only in memory
        assert admin(gw, "GET", "/v1/quota", key=key)["tokens"]["used"] == 20
        with pytest.raises(openai.RateLimitError):
            chat(gw, key)
        assert admin(gw, "GET", "/v1/quota", key=key)["tokens"]["used"] == 20
    for name in client.scan_iter(match=f"anygate:{{budget:key:{key_id}:*"):
        client.delete(name)
    client.close()


def test_anygate_usage_names_keys_by_alias(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anygate.cli import app as cli_app

    settings = fake_provider_settings(upstream.base_url, tmp_path, prices={"fake/*": {"input": 1, "output": 2}})
    with inprocess_gateway(settings, upstream) as gw:
        created = new_key(gw, alias="comp318-alice-the-long-alias")
        chat(gw, created["key"])
        admin(gw, "GET", "/v1/usage")  # the ledger is written
    env = {"ANYGATE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    table = CliRunner().invoke(cli_app, ["usage", "--by", "key"], env=env)
    assert table.exit_code == 0, table.output
    assert "comp318-alice-the-long-alias" in table.output
    assert created["id"] not in table.output
    assert "$0.000013" in table.output  # 7 + 3 * 2 millionths of a dollar, not $0.0000
