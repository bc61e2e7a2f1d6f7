"""Budget alerts: one POST per threshold crossed per window, retried, claimed once across replicas."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from anygate.accounting.alerts import Alerts
from anygate.accounting.budgets import Scope
from anygate.accounting.enforcer import budget_bucket
from anygate.accounting.limiter import Claim, Grant, MemoryLimiter
from anygate.accounting.periods import iso_utc
from anygate.auth import Budget
from anygate.settings import AlertSettings
from anygate.store.tables import metadata
from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings
from tests.support.fake_transport import FakeNetwork, FakeTransport
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.inprocess import inprocess_gateway
from tests.support.waiting import eventually

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def hook_path(hook: FakeUpstream) -> str:
    return urlsplit(hook.base_url + "/hook").path


@pytest.fixture
def hook() -> FakeUpstream:
    return FakeUpstream().in_memory()


def test_a_team_budget_alerts_once_per_threshold_and_window(tmp_path: Path) -> None:
    network = FakeNetwork()  # the provider and the webhook, each at an origin of its own
    upstream, hook = network.add(FakeUpstream(usage=Usage(7, 3))), network.add(FakeUpstream())
    hook.script(
        Reply(status=500, json={"error": "busy"}), *(Reply(json={"ok": True}) for _ in range(5)), path=hook_path(hook)
    )
    alerts = AlertSettings(
        url=hook.base_url + "/hook",
        headers={"x-hook-token": "t0ken"},
        thresholds=[0.5, 1.0],
        allow_private_network=True,
    )
    settings = fake_provider_settings(upstream.base_url, tmp_path, alerts=alerts)
    with inprocess_gateway(settings, transport=network) as gw, gw.client(ADMIN_KEY) as admin:
        team = admin.post("/v1/teams", json={"name": "COMP318", "budgets": [{"requests": 2, "window": "daily"}]}).json()
        user = admin.post("/v1/users", json={"name": "s", "team_id": team["id"]}).json()
        key = admin.post("/v1/keys", json={"alias": "s", "user_id": user["id"]}).json()["key"]
        with gw.sdk(key) as client:
            for _ in range(2):
                client.chat.completions.create(model="fake/fake-model", messages=MESSAGES)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="fake/fake-model", messages=MESSAGES)
        # The passes run each second; the refused POST is tried again after a backoff.
        eventually(lambda: len(hook.requests_to(hook_path(hook))) >= 3, "both crossings sent, the refused one again")
        for _ in range(2):  # another pass or two: nothing more is sent for the same crossings
            gw.run(gw.app.state.accounting.alerts.check())
    # Stopped, the gateway has waited for every POST under way.
    posted = hook.requests_to(hook_path(hook))
    delivered = [r.json for r in posted if r.json is not None]
    assert sorted({d["threshold"] for d in delivered}) == [0.5, 1.0]
    assert len(posted) == 3  # two crossings, one of them retried once after the 500
    first = next(d for d in delivered if d["threshold"] == 1.0)
    assert first == {
        "scope": "team",
        "id": team["id"],
        "name": "COMP318",
        "threshold": 1.0,
        "used": 2.0,
        "limit": 2.0,
        "unit": "requests",
        "window": "daily",
        "resets_at": first["resets_at"],
    }
    assert first["resets_at"].endswith("T00:00:00Z")
    assert posted[0].headers["x-hook-token"] == "t0ken"


async def test_two_replicas_send_each_crossing_once(tmp_path: Path, hook: FakeUpstream) -> None:
    hook.script(*(Reply(json={"ok": True}) for _ in range(10)), path=hook_path(hook))
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    limiter = MemoryLimiter()
    scope = Scope("user", "u1", Budget(tokens=100, period="weekly"))
    now = datetime.now(UTC)
    grant = await limiter.reserve(budget_bucket(scope, scope.all_budgets[0], now), [Claim("tokens", 100, 90)], 60)
    assert isinstance(grant, Grant)
    await limiter.settle(grant, {"tokens": 90.0})
    settings = AlertSettings(url=hook.base_url + "/hook", thresholds=[0.8, 1.0], allow_private_network=True)
    transport = FakeTransport(hook)
    replicas = [Alerts(transport, engine, limiter, settings) for _ in range(2)]
    for replica in replicas:
        replica.watch([scope])
    sent = await asyncio.gather(*(replica.check(now) for replica in replicas))
    assert sum(sent) == 1  # 90 of 100: the 0.8 crossing, once in all
    for replica in replicas:
        replica.watch([scope])
        assert await replica.check(now) == 0
        await replica.close()
    bodies = [json.loads(r.body or b"{}") for r in transport.sent]
    assert [(b["threshold"], b["used"], b["unit"], b["window"]) for b in bodies] == [(0.8, 90.0, "tokens", "weekly")]
    await engine.dispose()


async def test_a_rolling_window_alerts_again_once_its_usage_fell_below_the_threshold(
    tmp_path: Path, hook: FakeUpstream
) -> None:
    """A 5-hour window never starts again: its crossing is re-armed when what made it cross has left."""
    hook.script(*(Reply(json={"ok": True}) for _ in range(10)), path=hook_path(hook))
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    clock = [1_800_000_123.0]
    limiter = MemoryLimiter(clock=lambda: clock[0])
    scope = Scope("user", "u1", Budget(tokens=100, period="5h"))
    bucket = budget_bucket(scope, scope.all_budgets[0], datetime.now(UTC))

    async def use(tokens: float) -> None:
        grant = await limiter.reserve(bucket, [Claim("tokens", 100, tokens)], 60, slot=300)
        assert isinstance(grant, Grant)
        await limiter.settle(grant, {"tokens": tokens})

    settings = AlertSettings(url=hook.base_url + "/hook", thresholds=[0.8], allow_private_network=True)
    transport = FakeTransport(hook)
    alerts = Alerts(transport, engine, limiter, settings)

    async def check() -> int:
        alerts.watch([scope])
        return await alerts.check()

    await use(90)
    assert await check() == 1
    clock[0] += 3600
    await use(5)
    assert await check() == 0  # still above: the same crossing
    clock[0] += 5 * 3600 - 3600 + 300  # the 90 have left the window, the 5 have not
    assert await check() == 0  # below: re-armed, nothing sent
    await use(80)
    assert await check() == 1  # a new crossing
    await alerts.close()
    bodies = [json.loads(r.body or b"{}") for r in transport.sent]
    assert [(b["used"], b["window"]) for b in bodies] == [(90.0, "5h"), (85.0, "5h")]
    first_slot = int(1_800_000_123.0 // 300)
    assert bodies[0]["resets_at"] == iso_utc(datetime.fromtimestamp((first_slot + 61) * 300, UTC))
    await engine.dispose()
