"""Teams and several budgets per holder: a key's request counts against its key's, its user's and its
team's budgets, every window of each, reserved together on every limiter backend; 200 concurrent requests
admit exactly what the binding level allows, at each level."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tests.accounting.conftest import REDIS
from tests.accounting.gateway import ADMIN_KEY, eventually, fake_provider_settings
from tests.accounting.test_key_family_budgets import backend
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import estimate_prompt

# The gateway in-process, its upstream in memory; the Redis and PostgreSQL limiters are the real servers.
REDIS_BACKEND = pytest.param("redis", marks=pytest.mark.services)

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"
PROMPT = estimate_prompt({"messages": MESSAGES})


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3)).in_memory()  # 10 tokens a request


def call(
    gw: InProcessGateway, method: str, path: str, body: Any = None, key: str = ADMIN_KEY, status: int | None = None
) -> Any:
    with gw.client(key) as http:
        reply = http.request(method, path, json=body)
    if status is None:
        assert reply.status_code in (200, 201), reply.text
    else:
        assert reply.status_code == status, reply.text
    return reply.json()


def chat(gw: InProcessGateway, key: str, **extra: Any) -> Any:
    with gw.sdk(key) as client:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)


def student(gw: InProcessGateway, team: str | None, user_budgets: Any = None, **key_fields: Any) -> dict[str, Any]:
    user = call(
        gw, "POST", "/v1/users", {"name": "s", "team_id": team, **({"budgets": user_budgets} if user_budgets else {})}
    )
    return call(gw, "POST", "/v1/keys", {"alias": "s", "user_id": user["id"], **key_fields})  # type: ignore[no-any-return]


def forget_redis(*scopes: str) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        for scope in scopes:
            for name in client.scan_iter(match=f"anygate:{{budget:{scope}:*"):
                client.delete(name)
    finally:
        client.close()


def test_a_team_is_made_shown_changed_and_deleted(upstream: FakeUpstream, tmp_path: Path) -> None:
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        budgets = [
            {"usd": 200.0, "window": "monthly", "mode": "soft"},
            {"tokens": 1000, "window": "5h", "mode": "soft"},
        ]
        made = call(
            gw, "POST", "/v1/teams", {"id": "comp318", "name": "COMP318", "budgets": budgets, "models": ["fake/*"]}
        )
        assert made["id"] == "comp318" and made["budgets"][1] == {
            "tokens": 1000,
            "usd": None,
            "requests": None,
            "window": "5h",
            "mode": "soft",
        }
        call(gw, "POST", "/v1/teams", {"id": "comp318", "name": "again"}, status=409)
        key = student(gw, "comp318")
        chat(gw, key["key"])
        detail = call(gw, "GET", "/v1/teams/comp318")
        assert [m["id"] for m in detail["members"]] == [key["user_id"]] and detail["key_count"] == 1
        assert detail["spend"]["tokens"] == 10 and detail["spend"]["requests"] == 1
        assert [use["used"]["tokens"] for use in detail["budget_use"]] == [10, 10]
        changed = call(
            gw, "PATCH", "/v1/teams/comp318", {"name": "COMP 318", "budget": {"tokens": 5, "period": "daily"}}
        )
        assert changed["budgets"] == [{"tokens": 5, "usd": None, "requests": None, "window": "daily", "mode": "hard"}]
        assert [t["id"] for t in call(gw, "GET", "/v1/teams")["data"]] == ["comp318"]
        call(gw, "DELETE", "/v1/teams/comp318")
        call(gw, "GET", "/v1/teams/comp318", status=404)
        assert call(gw, "GET", f"/v1/users/{key['user_id']}")["team_id"] is None


def test_bad_budget_lists_are_refused_naming_the_field(upstream: FakeUpstream, tmp_path: Path) -> None:
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        both = call(
            gw, "POST", "/v1/keys", {"alias": "k", "budget": {"tokens": 1}, "budgets": [{"tokens": 1}]}, status=400
        )
        assert both["error"]["param"] == "budgets"
        twice = [{"tokens": 1, "window": "daily"}, {"usd": 1, "window": "daily"}]
        assert call(gw, "POST", "/v1/users", {"name": "u", "budgets": twice}, status=400)["error"]["param"] == "budgets"
        window = call(gw, "POST", "/v1/teams", {"name": "t", "budgets": [{"tokens": 1, "window": "5d"}]}, status=400)
        assert window["error"]["param"] == "budgets.0.window"
        empty = call(gw, "POST", "/v1/keys", {"alias": "k", "budgets": [{"window": "daily"}]}, status=400)
        assert empty["error"]["param"] == "budgets.0"
        boolean = call(gw, "POST", "/v1/keys", {"alias": "k", "budgets": [{"requests": True}]}, status=400)
        assert boolean["error"]["param"] == "budgets.0.requests"
        unknown = call(gw, "POST", "/v1/users", {"name": "u", "team_id": "nope"}, status=400)
        assert unknown["error"]["param"] == "team_id"


@pytest.mark.parametrize("limiter", ["memory", "sql", REDIS_BACKEND])
def test_any_used_up_budget_of_key_user_or_team_refuses(upstream: FakeUpstream, tmp_path: Path, limiter: str) -> None:
    """Three budgets on the team (daily tokens, 5h requests, monthly soft USD): the 5h request count binds
    first; the quota lists every budget and reports the tightest."""
    settings = fake_provider_settings(upstream.base_url, tmp_path, **backend(limiter))
    scopes: list[str] = []
    try:
        with inprocess_gateway(settings, upstream) as gw:
            budgets = [
                {"tokens": 1000, "window": "daily"},
                {"requests": 2, "window": "5h"},
                {"usd": 50.0, "window": "monthly", "mode": "soft"},
            ]
            team = call(gw, "POST", "/v1/teams", {"name": "course", "budgets": budgets})
            key = student(gw, team["id"], user_budgets=[{"tokens": 500, "window": "weekly"}])
            scopes += [f"team:{team['id']}", f"user:{key['user_id']}"]
            chat(gw, key["key"])
            chat(gw, key["key"])
            with pytest.raises(openai.RateLimitError) as refusal:
                chat(gw, key["key"])
            assert "5h request budget of this team is used up" in refusal.value.message
            # a rolling window's headroom grows when its oldest request leaves it, 5 hours (and a slot) on
            assert 5 * 3600 - 300 <= int(refusal.value.response.headers["retry-after"]) <= 5 * 3600 + 300
            quota = call(gw, "GET", "/v1/quota", key=key["key"])
            assert quota["tokens"] == {
                "limit": 500,
                "used": 20,
                "remaining": 480,
                "resets_at": quota["tokens"]["resets_at"],
            }  # the user's weekly budget has the least tokens left
            listed = {(b["scope"], b["window"]): b for b in quota["budgets"]}
            assert set(listed) == {("user", "weekly"), ("team", "daily"), ("team", "5h"), ("team", "monthly")}
            assert listed[("team", "5h")]["requests"] == {"limit": 2, "used": 2, "remaining": 0}
            assert listed[("team", "daily")]["tokens"]["used"] == 20
        assert len(upstream.requests_to("/v1/chat/completions")) == 2
    finally:
        if limiter == "redis":
            forget_redis(*scopes)


def test_a_team_allowlist_binds_its_members_keys(upstream: FakeUpstream, tmp_path: Path) -> None:
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        team = call(gw, "POST", "/v1/teams", {"name": "t", "models": ["other/*"]})
        key = student(gw, team["id"])
        with pytest.raises(openai.PermissionDeniedError):
            chat(gw, key["key"])
        call(gw, "PATCH", "/v1/teams/" + team["id"], {"models": ["fake/*"]})
        chat(gw, key["key"])


BURST_BACKENDS = ["memory", REDIS_BACKEND, pytest.param("sql-postgresql", marks=pytest.mark.services)]


def burst(gw: InProcessGateway, keys: list[str]) -> list[int]:
    """200 requests at once, the keys taking turns."""

    async def run() -> list[int]:
        body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 20}
        async with gw.async_client(None) as c:
            replies = await asyncio.gather(
                *(
                    c.post(
                        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {keys[n % len(keys)]}"}
                    )
                    for n in range(200)
                )
            )
        return [r.status_code for r in replies]

    return gw.run(run())


@pytest.mark.parametrize(("level", "window"), [("key", "daily"), ("user", "daily"), ("team", "daily"), ("team", "5h")])
@pytest.mark.parametrize("limiter", BURST_BACKENDS)
def test_200_concurrent_requests_admit_exactly_the_binding_budget_at_each_level(
    upstream: FakeUpstream, tmp_path: Path, limiter: str, level: str, window: str, request: pytest.FixtureRequest
) -> None:
    """Every level has a budget; the one under test allows 50 requests, the others far more. Four keys
    (two users of one team) share the burst when the user or team binds; one key when the key binds. A
    rolling window (``5h``) is as exact as a calendar one."""
    ask = PROMPT + 20
    upstream.usage = Usage(PROMPT, 20)
    if limiter == "sql-postgresql":
        extra: dict[str, Any] = {
            "limiter": "sql",
            "database_url": request.getfixturevalue("postgres_url").replace("+asyncpg", ""),
        }
    else:
        extra = backend(limiter)

    def budgets(binds: bool) -> list[dict[str, Any]]:
        # One budget a level (three buckets a request, as the key-family burst): the burst measures exactness;
        # several windows a holder are covered by the test above.
        return [{"tokens": (50 if binds else 100_000) * ask, "window": window}]

    scopes: list[str] = []
    try:
        with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, **extra), upstream) as gw:
            team = call(gw, "POST", "/v1/teams", {"name": "t", "budgets": budgets(level == "team")})
            users = [
                call(
                    gw,
                    "POST",
                    "/v1/users",
                    {"name": f"u{n}", "team_id": team["id"], "budgets": budgets(level == "user")},
                )
                for n in range(2 if level == "team" else 1)
            ]
            keys = [
                call(
                    gw,
                    "POST",
                    "/v1/keys",
                    {"alias": f"k{n}", "user_id": user["id"], "budgets": budgets(level == "key")},
                )
                for user in users
                for n in range(1 if level == "key" else 2)
            ]
            scopes += [f"team:{team['id']}", *(f"user:{u['id']}" for u in users), *(f"key:{k['id']}" for k in keys)]
            statuses = burst(gw, [k["key"] for k in keys])
            assert statuses.count(200) == 50, statuses
            assert statuses.count(429) == 150
            binding = {"team": team["id"], "user": users[0]["id"], "key": keys[0]["id"]}[level]

            def entry() -> dict[str, Any]:
                quota = call(gw, "GET", "/v1/quota", key=keys[0]["key"])
                return {(b["scope"], b["id"], b["window"]): b for b in quota["budgets"]}[(level, binding, window)]

            # once the last answers have settled (after they were sent)
            eventually(lambda: entry()["tokens"]["used"] == 50 * ask, "the binding budget charged 50 requests")
            if window == "5h":  # headroom grows when the burst's usage leaves the window, 5 hours on
                resets_at = datetime.fromisoformat(entry()["resets_at"]).timestamp() - time.time()
                assert 5 * 3600 - 300 <= resets_at <= 5 * 3600 + 300
    finally:
        if limiter == "redis":
            forget_redis(*scopes)
    assert len(upstream.requests_to("/v1/chat/completions")) == 50


def test_a_roster_enrols_once_and_a_team_admin_manages_only_its_team(upstream: FakeUpstream, tmp_path: Path) -> None:
    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw:
        team = call(gw, "POST", "/v1/teams", {"id": "comp318", "name": "COMP318"})["id"]
        other = call(gw, "POST", "/v1/teams", {"id": "other", "name": "Other"})["id"]
        roster = {
            "users": [{"name": "ana"}, {"name": "bo"}, {"name": "ana"}],
            "budgets": [{"requests": 1, "window": "daily"}],
        }
        first = call(gw, "POST", f"/v1/teams/{team}/roster", roster)
        assert (first["created"], first["kept"]) == (2, 0) and all(r["key"].startswith("sk-ag-") for r in first["data"])
        again = call(gw, "POST", f"/v1/teams/{team}/roster", {**roster, "users": [*roster["users"], {"name": "cy"}]})
        assert (again["created"], again["kept"]) == (1, 2)
        assert [r["key"] for r in again["data"] if r["status"] == "kept"] == [None, None]
        assert len(call(gw, "GET", f"/v1/users?team_id={team}")["data"]) == 3
        chat(gw, first["data"][0]["key"])
        with pytest.raises(openai.RateLimitError):  # the per-student budget: one request a day
            chat(gw, first["data"][0]["key"])
        ta_user = call(gw, "POST", "/v1/users", {"name": "ta", "team_id": team})
        ta = call(gw, "POST", "/v1/keys", {"alias": "ta", "user_id": ta_user["id"], "role": "team_admin"})["key"]
        outsider = call(gw, "POST", "/v1/users", {"name": "x", "team_id": other})
        assert {k["user_id"] for k in call(gw, "GET", "/v1/keys", key=ta)["data"]} <= {
            r["user_id"] for r in again["data"]
        } | {ta_user["id"]}
        made = call(gw, "POST", "/v1/keys", {"alias": "extra", "user_id": first["data"][1]["user_id"]}, key=ta)
        call(gw, "DELETE", f"/v1/keys/{made['id']}", key=ta)
        call(gw, "POST", "/v1/keys", {"alias": "x", "user_id": outsider["id"]}, key=ta, status=403)
        call(gw, "GET", f"/v1/users/{outsider['id']}", key=ta, status=403)
        call(gw, "PATCH", f"/v1/users/{first['data'][1]['user_id']}", {"team_id": other}, key=ta, status=403)
        call(gw, "GET", "/v1/teams/other", key=ta, status=403)
        call(gw, "POST", "/v1/teams", {"name": "mine"}, key=ta, status=403)
        call(gw, "GET", "/v1/providers/fake", key=ta, status=403)
        call(gw, "GET", "/v1/audit", key=ta, status=403)
        new_user = call(gw, "POST", "/v1/users", {"name": "late"}, key=ta)
        assert new_user["team_id"] == team
        entries = call(gw, "GET", "/v1/audit?limit=2")
        assert entries["data"][0]["action"] == "user.create" and entries["data"][0]["actor"]["label"] == "ta"
        assert entries["next_cursor"] is not None
        older = call(gw, "GET", f"/v1/audit?cursor={entries['next_cursor']}&target={team}")
        assert [e["action"] for e in older["data"]] == ["team.roster", "team.roster", "team.create"]
        assert "sk-ag-" not in str(older["data"])  # no secret recorded
        call(gw, "DELETE", "/v1/audit", status=405)
        info = call(gw, "GET", f"/team/info?team_id={team}")
        assert info["team_info"]["team_alias"] == "COMP318" and len(info["team_memberships"]) == 5


LOOSE = {"rpm": 100_000, "tpm": 100_000_000, "concurrency": 1000}  # rate limits that never bind: more buckets


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_the_sql_limiter_refuses_with_429_never_503_when_a_key_counts_against_nine_budgets(
    upstream: FakeUpstream, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """A key under a user and a team, three windows each (nine budget buckets a request): 200 concurrent
    requests on the SQL limiter admit exactly what the binding budget allows and refuse the rest with 429,
    none with 503 (a request's reservations share one connection and one transaction)."""
    ask = PROMPT + 20
    upstream.usage = Usage(PROMPT, 20)
    extra: dict[str, Any] = {"limiter": "sql"}
    if database == "postgresql":
        extra["database_url"] = request.getfixturevalue("postgres_url").replace("+asyncpg", "")

    def budgets(binding: int) -> list[dict[str, Any]]:
        wide = 100_000 * ask
        return [
            {"tokens": binding * ask, "window": "daily"},
            {"tokens": wide, "window": "weekly"},
            {"tokens": wide, "requests": 100_000, "window": "monthly"},
        ]

    with inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path, **extra), upstream) as gw:
        team = call(gw, "POST", "/v1/teams", {"name": "t", "budgets": budgets(50), "limits": LOOSE})
        user = call(
            gw, "POST", "/v1/users", {"name": "u", "team_id": team["id"], "budgets": budgets(1000), "limits": LOOSE}
        )
        key = call(
            gw, "POST", "/v1/keys", {"alias": "k", "user_id": user["id"], "budgets": budgets(1000), "limits": LOOSE}
        )
        statuses = burst(gw, [key["key"]])
        assert statuses.count(200) == 50, sorted(statuses)
        assert statuses.count(429) == 150, sorted(statuses)

        def used() -> set[float]:  # every bucket, once the last answers have settled
            quota = call(gw, "GET", "/v1/quota", key=key["key"])
            return {b["tokens"]["used"] for b in quota["budgets"]}

        eventually(lambda: used() == {50 * ask}, "nine budgets charged 50 requests each")
    assert len(upstream.requests_to("/v1/chat/completions")) == 50
