"""Accounting end to end: the gateway in-process, the fake upstream in memory as provider, the openai SDK as
client; on real ports where the socket is the subject (a client hanging up, a stream broken off, the CLI)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx2 as httpx
import openai
import pytest

from anygate.accounting.budgets import StaticBudgets
from anygate.auth import Budget, Limits, Principal
from anygate.management.provider_view import routed_view
from anygate.settings import QuotaConfig, Settings
from tests.accounting.gateway import ADMIN_KEY, eventually, fake_provider_settings, running_gateway
from tests.support.fake_upstream import FakeUpstream, Reply, Usage, priced_model
from tests.support.inprocess import InProcessGateway, inprocess_gateway
from tests.support.tokens import count_text, estimate_prompt

STUDENT = "sk-ag-student-secret-key-1111111111"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
MODEL = "fake/fake-model"


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(usage=Usage(7, 3)).in_memory()


@pytest.fixture
def served_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(usage=Usage(7, 3)) as up:
        yield up


class Caller(Protocol):
    def client(self, key: str | None = ...) -> httpx.Client: ...


@dataclass
class Served:
    """The gateway on a real port, called as the in-process one is."""

    url: str

    def client(self, key: str | None = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {})


def student(**budgets: Any) -> tuple[dict[str, Principal], StaticBudgets]:
    principal = Principal(key_id="student", is_admin=False, label="student-1", user_id=None)
    return {STUDENT: principal}, StaticBudgets(
        {"student": budgets["budget"]} if "budget" in budgets else None,
        {"student": budgets["limits"]} if "limits" in budgets else None,
    )


@contextmanager
def gateway(
    settings: Settings,
    upstream: FakeUpstream,
    keys: dict[str, Principal] | None = None,
    budgets: StaticBudgets | None = None,
) -> Iterator[InProcessGateway]:
    with inprocess_gateway(settings, upstream, keys=keys, budget_source=budgets) as gw:
        yield gw


@pytest.fixture(autouse=True)
def closed_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every openai client a test makes is closed at its end (no socket left to the garbage collector)."""
    made: list[openai.OpenAI] = []
    original = openai.OpenAI.__init__

    def init(self: openai.OpenAI, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(openai.OpenAI, "__init__", init)
    yield
    for client in made:
        client.close()


def ledger_rows(data_dir: Path, columns: str) -> list[tuple[Any, ...]]:
    """Rows of the usage ledger in the gateway's SQLite database (the data dir's ``anygate.db``)."""
    with sqlite3.connect(data_dir / "anygate.db") as db:
        return db.execute(f"select {columns} from usage_ledger order by created_at").fetchall()


def admin_get(gw: Caller, path: str, **params: Any) -> httpx.Response:
    with gw.client(ADMIN_KEY) as http:
        return http.get(path, params=params)


def key_get(gw: Caller, path: str, key: str = STUDENT) -> Any:
    with gw.client(key) as http:
        response = http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_usage_of_responses_and_streams_is_counted_and_the_extra_usage_event_hidden(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    keys, budgets = student(budget=Budget(tokens=100_000, period="daily"))
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:
        client = gw.sdk(STUDENT)
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert reply.usage is not None and reply.usage.total_tokens == 10

        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        sent = upstream.requests_to("/v1/chat/completions")[-1].json
        assert sent["stream_options"] == {"include_usage": True}  # asked for the client
        assert all(chunk.usage is None for chunk in chunks)  # and hidden from it
        assert all(chunk.choices for chunk in chunks)

        asked = list(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        assert asked[-1].usage is not None and asked[-1].usage.total_tokens == 10

        client.embeddings.create(model=MODEL, input="hello")
        client.completions.create(model=MODEL, prompt="hello")

        quota = key_get(gw, "/v1/quota")
        assert quota["tokens"]["used"] == 10 + 10 + 10 + 7 + 10
        rows = admin_get(gw, "/v1/usage", group_by="key").json()["data"]
        assert rows == [
            {
                "key": "student",
                "key_alias": None,  # a key the test's budget source made: not in the store
                "requests": 5,
                "served": 5,
                "refused": 0,
                "refused_statuses": {},
                "input_tokens": 7 * 5,
                "output_tokens": 3 * 4,
                "cached_input_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "image_tokens": 0,
                "estimated_requests": 0,
                "upstream_cost_requests": 0,
                "cost_usd": None,
                "unpriced_requests": 5,
                "byok_cost_usd": 0.0,
            }
        ]


def test_a_silent_upstream_is_estimated_and_an_explicit_zero_is_zero(upstream: FakeUpstream, tmp_path: Path) -> None:
    chat = "/v1/chat/completions"
    upstream.script(Reply(omit_usage=True, content="one two three four"), Reply(usage=Usage(0, 0)), path=chat)
    upstream.script(Reply(omit_usage=True, content="streamed words here"), path=chat)
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, *student()) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

        def usage_rows() -> list[dict[str, Any]]:
            return list(admin_get(gw, "/v1/usage", group_by="key,day").json()["data"])

        # The first estimate loads the vocabulary, so those requests settle a moment after they answered.
        eventually(lambda: sum(row["requests"] for row in usage_rows()) == 3, "three requests in the ledger")
        rows = usage_rows()
        assert rows[0]["estimated_requests"] == 2, rows
        prompt = estimate_prompt({"messages": MESSAGES})
        assert rows[0]["input_tokens"] == 2 * prompt
        assert rows[0]["output_tokens"] == count_text("one two three four") + count_text("streamed words here")


def test_a_hard_budget_clamps_max_tokens_then_refuses_with_retry_after(upstream: FakeUpstream, tmp_path: Path) -> None:
    prompt = estimate_prompt({"messages": MESSAGES})
    keys, budgets = student(budget=Budget(tokens=10 + prompt + 50, period="daily"))
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # uses 10 of the budget
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=500)
        assert upstream.requests_to("/v1/chat/completions")[-1].json["max_tokens"] == 50
        assert key_get(gw, "/v1/quota")["tokens"]["remaining"] == prompt + 50 - 10
        upstream.script(Reply(usage=Usage(prompt, 50)), path="/v1/chat/completions")
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        error = refused.value.body
        assert isinstance(error, dict) and error["type"] == "insufficient_quota"
        assert int(refused.value.response.headers["retry-after"]) > 0
        assert key_get(gw, "/v1/quota")["tokens"]["remaining"] <= 0


def test_a_soft_budget_lets_requests_through_and_reports_negative_remaining(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    keys, budgets = student(budget=Budget(tokens=15, usd=None, period="weekly", mode="soft"))
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:
        client = gw.sdk(STUDENT)
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        tokens = key_get(gw, "/quota")["tokens"]
        assert (tokens["limit"], tokens["used"], tokens["remaining"]) == (15, 30, -15)
        assert tokens["resets_at"].endswith("T00:00:00Z")


def test_rate_limits_apply_to_model_routes_and_the_proxy(upstream: FakeUpstream, tmp_path: Path) -> None:
    keys, budgets = student(limits=Limits(rpm=2))
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with gw.client(STUDENT) as http:
            proxied = http.post("/proxy/fake/v1/chat/completions", json={"model": "fake-model", "messages": MESSAGES})
            assert proxied.status_code == 200
            refused = http.post("/proxy/fake/v1/chat/completions", json={"model": "fake-model", "messages": MESSAGES})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert len(upstream.requests_to("/v1/chat/completions")) == 2
        admin_get(gw, "/v1/usage")  # flushes the ledger
    routes = sorted(ledger_rows(tmp_path, "route, status"))
    assert routes == [
        ("chat/completions", 200),
        ("chat/completions", 429),
        ("proxy:chat/completions", 200),
        ("proxy:chat/completions", 429),
    ]


def test_quota_endpoints_in_every_shape(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(
        upstream.base_url, tmp_path, prices={"fake/fake-model": {"input": 1, "output": 2}}
    )
    keys, budgets = student(budget=Budget(usd=5.0, period="monthly"), limits=Limits(rpm=60, tpm=100_000))
    with gateway(settings, upstream, keys, budgets) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        cost = (7 * 1 + 3 * 2) / 1_000_000
        neutral = key_get(gw, "/v1/quota")
        assert neutral["cost"] == {"currency": "USD", "limit": 5.0, "used": cost, "remaining": round(5.0 - cost, 6)}
        assert neutral["tokens"]["limit"] is None
        for path in ("/api/v1/key", "/api/v1/auth/key", "/v1/key"):
            data = key_get(gw, path)["data"]
            assert set(data) == {
                "label", "limit", "limit_remaining", "limit_reset", "usage", "usage_daily", "usage_weekly",
                "usage_monthly", "byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly",
                "include_byok_in_limit", "is_free_tier", "is_management_key", "is_provisioning_key",
                "creator_user_id", "expires_at", "rate_limit", "allowed_data_regions", "budgets", "effective_budget",
                "free_model_daily_requests", "organization_id", "workspace_id",
            }  # fmt: skip
            assert data["limit"] == 5.0 and data["limit_reset"] == "monthly"
            assert data["usage"] == data["usage_daily"] == data["usage_monthly"] == cost
            assert data["rate_limit"]["requests"] == 60
        info = key_get(gw, "/key/info")
        assert info["key"] == "student" and STUDENT not in json.dumps(info)
        assert info["info"]["max_budget"] == 5.0 and info["info"]["spend"] == cost
        assert info["info"]["budget_duration"] == "1mo" and info["info"]["budget_reset_at"].endswith("01T00:00:00Z")
        assert (info["info"]["tpm_limit"], info["info"]["rpm_limit"]) == (100_000, 60)


def test_usage_report_groups_and_exports_csv(upstream: FakeUpstream, tmp_path: Path) -> None:
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, *student()) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        admin = gw.sdk(ADMIN_KEY)
        admin.chat.completions.create(model=MODEL, messages=MESSAGES)
        by_key = admin_get(gw, "/v1/usage", group_by="key,model,provider").json()
        assert [(r["key"], r["model"], r["provider"]) for r in by_key["data"]] == [
            ("admin", "fake-model", "fake"),
            ("student", "fake-model", "fake"),
        ]
        assert by_key["unpriced_models"] == [{"provider_id": "fake", "model": "fake-model", "requests": 2}]
        only_student = admin_get(gw, "/v1/usage", key="student").json()
        assert only_student["data"][0]["requests"] == 1
        assert only_student["unpriced_models"] == [{"provider_id": "fake", "model": "fake-model", "requests": 1}]
        assert admin_get(gw, "/v1/usage", key="nobody").json()["unpriced_models"] == []
        exported = admin_get(gw, "/v1/usage", group_by="day", format="csv")
        assert exported.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(exported.text)))
        assert table[0]["requests"] == "2" and len(table[0]["day"]) == 10
        assert admin_get(gw, "/v1/usage", group_by="colour").status_code == 400
        # A key holder sees its own usage only, whatever key it names.
        own = key_get(gw, "/v1/usage?group_by=key,hour")
        assert [(r["key"], r["requests"], len(r["hour"])) for r in own["data"]] == [("student", 1, 16)]
        assert key_get(gw, "/v1/usage?key=admin")["data"] == []


def test_200_concurrent_requests_against_a_budget_of_50_are_admitted_50_times(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    prompt = estimate_prompt({"messages": MESSAGES})
    ask = prompt + 20
    keys, budgets = student(budget=Budget(tokens=50 * ask, period="daily"))
    upstream.usage = Usage(prompt, 20)
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:

        async def burst() -> list[int]:
            async with gw.async_client(STUDENT) as client:
                body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 20}
                replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(200)))
                return [r.status_code for r in replies]

        statuses = gw.run(burst())
        assert statuses.count(200) == 50
        assert statuses.count(429) == 150
        assert key_get(gw, "/v1/quota")["tokens"]["used"] == 50 * ask
        assert len(upstream.requests_to("/v1/chat/completions")) == 50


@pytest.mark.sockets  # the quota client calls the gateway over HTTP
def test_the_quota_client_reads_anygates_own_endpoints_in_every_format(
    served_upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anygate.cli import app as cli_app

    keys, budgets = student(budget=Budget(tokens=1000, usd=2.0, period="daily"), limits=Limits(rpm=100))
    settings = fake_provider_settings(
        served_upstream.base_url, tmp_path, prices={"fake/*": {"input": 1000, "output": 1000}}
    )
    with running_gateway(settings, keys, budgets) as (base, _):
        with openai.OpenAI(base_url=base + "/v1", api_key=STUDENT) as client:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)  # 10 tokens, $0.01
        config = tmp_path / "home" / "anygate"
        config.mkdir(parents=True)
        sources = [
            {"id": "course", "base_url": base + "/v1", "label": "Course"},
            {"id": "course-or", "base_url": base, "quota_path": "/api/v1/key", "format": "openrouter"},
            {"id": "course-litellm", "base_url": base, "quota_path": "/key/info", "format": "litellm"},
        ]
        (config / "config.yaml").write_text(json.dumps({"quota_sources": sources}))
        env = {"XDG_CONFIG_HOME": str(tmp_path / "home"), "ANYGATE_DATA_DIR": str(tmp_path / "cli-data")}
        env |= {"COURSE_API_KEY": STUDENT, "COURSE_OR_API_KEY": STUDENT, "COURSE_LITELLM_API_KEY": STUDENT}
        for name in list(__import__("os").environ):
            if name.startswith(("ANYGATE_", "OPENAI_", "OPENROUTER_")):
                monkeypatch.delenv(name)
        shown = CliRunner().invoke(cli_app, ["quota"], env=env)
        as_json = CliRunner().invoke(cli_app, ["quota", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "99% left (10/1K)" in shown.output
    assert "$0.01 / $2.00" in shown.output
    assert STUDENT not in shown.output + as_json.output
    results = {entry["id"]: entry for entry in json.loads(as_json.output)}
    assert results["course"]["tokens"]["remaining"] == 990
    assert results["course"]["tokens"]["resets_at"].endswith("T00:00:00Z")
    for name in ("course-or", "course-litellm"):
        assert results[name]["cost"]["limit"] == 2.0
        assert results[name]["cost"]["used"] == pytest.approx(0.01)
        assert results[name]["cost"]["remaining"] == pytest.approx(1.99)
        assert results[name]["cost"]["resets_at"].endswith("T00:00:00Z")


def test_prices_an_upstream_publishes_later_are_used_from_the_next_discovery_on(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path, discovery_interval=0.2)
    with gateway(settings, upstream, *student()) as gw:
        client = gw.sdk(STUDENT)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # no price published yet
        upstream.models = [priced_model("fake-model", "0.000001", "0.000002")]
        runtime = gw.app.state.registry.runtimes["fake"]
        eventually(lambda: "pricing" in runtime.model_entries["fake-model"], "the priced model list is discovered")
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        (row,) = admin_get(gw, "/v1/usage", group_by="key").json()["data"]
    assert row["requests"] == 2 and row["unpriced_requests"] == 1
    assert row["cost_usd"] == pytest.approx(7 * 0.000001 + 3 * 0.000002)


@pytest.mark.sockets  # a client hanging up mid-stream
def test_a_client_leaving_mid_stream_is_charged_for_what_was_generated(
    served_upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream = served_upstream
    upstream.script(Reply(chunks=40, event_delay=0.05, content="word " * 40), path="/v1/chat/completions")
    with running_gateway(fake_provider_settings(upstream.base_url, tmp_path), *student()) as (base, _):

        async def leave_early() -> None:
            import aiohttp

            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            async with aiohttp.ClientSession() as session:
                reply = await session.post(
                    base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {STUDENT}"}
                )
                received = b""
                async for chunk in reply.content.iter_any():
                    received += chunk
                    if received.count(b"word") >= 3:
                        break  # some words arrived: hang up
                reply.close()

        asyncio.run(leave_early())
        rows: list[dict[str, Any]] = []
        for _ in range(100):  # the gateway notices the hang-up on its next write
            rows = admin_get(Served(base), "/v1/usage", key="student").json()["data"]
            if rows:
                break
            asyncio.run(asyncio.sleep(0.05))
    assert rows and rows[0]["requests"] == 1
    assert rows[0]["input_tokens"] > 0
    assert 3 <= rows[0]["output_tokens"] < 40
    assert ledger_rows(tmp_path, "status") == [(499,)]  # recorded as the client's leaving, not a 200


@pytest.mark.sockets  # a stream broken off on the wire, read as it arrives
def test_a_stream_the_upstream_breaks_off_is_charged_for_what_was_generated(
    served_upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream = served_upstream
    upstream.script(
        Reply(chunks=20, content="word " * 20, omit_usage=True, reset_after_events=6), path="/v1/chat/completions"
    )
    with (
        running_gateway(fake_provider_settings(upstream.base_url, tmp_path), *student()) as (base, _),
        openai.OpenAI(base_url=base + "/v1", api_key=STUDENT, max_retries=0) as client,
    ):
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
                pass

        def usage_rows() -> list[dict[str, Any]]:
            return list(admin_get(Served(base), "/v1/usage", key="student").json()["data"])

        # Estimating loads the vocabulary first: the request settles a moment after it ended.
        eventually(lambda: bool(usage_rows()), "the request in the ledger")
        rows = usage_rows()
    assert rows and rows[0]["requests"] == 1
    assert 1 <= rows[0]["output_tokens"] < 20  # the words that arrived, estimated
    [(status, estimated)] = ledger_rows(tmp_path, "status, estimated")
    assert status == 502 and estimated


def test_anygate_usage_prints_the_ledger(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from anygate.cli import app as cli_app

    settings = fake_provider_settings(upstream.base_url, tmp_path)
    with (
        gateway(settings, upstream, *student()) as gw,
        gw.sdk(STUDENT) as client,
    ):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    for name in list(__import__("os").environ):
        if name.startswith(("ANYGATE_", "OPENAI_", "OPENROUTER_")):
            monkeypatch.delenv(name)
    env = {"ANYGATE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    table = CliRunner().invoke(cli_app, ["usage", "--by", "key,model"], env=env)
    assert table.exit_code == 0, table.output
    assert "student" in table.output and "fake-model" in table.output and "unknown" in table.output
    exported = CliRunner().invoke(cli_app, ["usage", "--by", "day,key", "--csv"], env=env)
    lines = exported.output.splitlines()
    assert lines[0].startswith("day,key,key_alias,requests,served,refused,refused_statuses,input_tokens,output_tokens")
    assert lines[1].split(",")[1:9] == ["student", "", "2", "2", "0", "", "14", "6"]
    assert CliRunner().invoke(cli_app, ["usage", "--by", "colour"], env=env).exit_code == 2


def test_upstream_quota_is_polled_into_providers_and_metrics(upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    settings.providers[0].quota = QuotaConfig(path="/quota", format="neutral")
    with gateway(settings, upstream) as gw:
        registry = gw.app.state.registry
        quota: dict[str, Any] | None = None
        for _ in range(100):  # the first poll runs as the gateway starts
            # What /v1/providers shows for each provider (the route itself is the lead's, tested there).
            quota = routed_view(registry, registry.runtimes["fake"]).get("quota")
            if quota:
                break
            asyncio.run(asyncio.sleep(0.05))
        with gw.client(None) as http:
            metrics = http.get("/metrics").text
    assert quota is not None
    assert quota["tokens"] == {"limit": 5000000, "used": 250000, "remaining": 4750000, "resets_at": None}
    assert quota["cost"]["remaining"] == 4.58 and "checked_at" in quota
    assert upstream.requests_to("/v1/quota")[0].headers["authorization"] == "Bearer sk-upstream-test"
    assert 'anygate_upstream_quota_remaining{provider="fake",unit="tokens"} 4.75e+06' in metrics


def test_gateways_sharing_a_database_poll_an_upstream_quota_once_and_all_show_it(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    settings = fake_provider_settings(upstream.base_url, tmp_path)
    settings.providers[0].quota = QuotaConfig(path="/quota", format="neutral")
    with ExitStack() as stack:
        gateways = [stack.enter_context(gateway(settings, upstream)).app for _ in range(3)]

        def shown() -> bool:
            return all(g.state.registry.runtimes["fake"].quota for g in gateways)

        eventually(shown, "every gateway shows the provider's quota")
        views = [g.state.registry.runtimes["fake"].quota for g in gateways]
    assert len(upstream.requests_to("/v1/quota")) == 1
    assert all(view == views[0] and view is not None and view["cost"]["remaining"] == 4.58 for view in views)


def test_the_responses_api_is_counted_streamed_or_not(upstream: FakeUpstream, tmp_path: Path) -> None:
    with (
        gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, *student()) as gw,
        gw.sdk(STUDENT) as client,
    ):
        client.responses.create(model=MODEL, input="hi")
        list(client.responses.create(model=MODEL, input="hi", stream=True))
        assert "stream_options" not in (upstream.requests_to("/v1/responses")[-1].json or {})
        rows = admin_get(gw, "/v1/usage", key="student").json()["data"]
        admin_view = admin_get(gw, "/v1/quota").json()
    assert (rows[0]["requests"], rows[0]["input_tokens"], rows[0]["output_tokens"]) == (2, 14, 6)
    assert rows[0]["estimated_requests"] == 0
    assert admin_view["tokens"]["limit"] is None and admin_view["cost"]["remaining"] is None


def test_a_concurrency_limit_refuses_the_request_over_it(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.script(Reply(first_byte_delay=1.0), path="/v1/chat/completions")
    keys, budgets = student(limits=Limits(concurrency=1))
    with gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream, keys, budgets) as gw:

        async def two_at_once() -> list[int]:
            body = {"model": MODEL, "messages": MESSAGES}
            async with gw.async_client(STUDENT) as client:
                first = asyncio.create_task(client.post("/v1/chat/completions", json=body))
                # Poll until the first request holds its slot upstream.
                while not upstream.requests_to("/v1/chat/completions"):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                second = await client.post("/v1/chat/completions", json=body)
                first_status = (await first).status_code
                again = await client.post("/v1/chat/completions", json=body)
                return [first_status, second.status_code, again.status_code]

        first, second, after = gw.run(two_at_once())
    assert (first, second, after) == (200, 429, 200)
