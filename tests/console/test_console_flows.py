"""The console's day-to-day flows in headless Chromium, each in English, Vietnamese and Chinese: usage charts
and CSV export, the request log, users and keys, teams and roster import, providers (key style, prices,
what checks checked), API errors in the chosen language, a phone-sized screen, and untrusted text.

Users, keys and providers run against the real gateway; some request log and teams cases are answered by
the browser in the gateway's shapes (``page.route``, api/views.py); test_console_real runs those pages
against the real gateway with nothing made up.
With ``ANYGATE_CONSOLE_SCREENSHOTS=<folder>`` each screen is saved there (``scripts/console-screenshots``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.console import test_console
from tests.console.test_console import ADMIN_KEY, SCREENSHOTS, Served, catalog

# The browser and the gateway on a loopback port, as test_console has them (one of each per module).
browser = test_console.browser
gateway = test_console.gateway

LANGS = ["en", "vi", "zh"]
# Screens saved in every language; the others in English only (the docs show one of each).
EVERY_LANGUAGE = {"usage", "phone"}
EVIL = '<img src=x onerror="window.pwned=1">'

pytestmark = pytest.mark.browser


def say(lang: str, key: str, **params: Any) -> str:
    """The catalog's text for ``key`` in ``lang``, placeholders filled."""
    text = catalog(lang)[key]
    return re.sub(r"\{(\w+)\}", lambda m: str(params.get(m.group(1), m.group(0))), text)


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(browser: Any, lang: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", accept_downloads=True)
    context.set_default_timeout(5000)
    context.add_init_script(f"localStorage.setItem('anygate.lang', {json.dumps(lang)});")
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Any, gateway: Served, key: str = ADMIN_KEY) -> None:
    page.goto(gateway.url + "/ui/")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("#sign-in-key", key)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
    # Every section's first load answered: until then a link of the menu may go (a section this key may not
    # see: People for a key holder), and the links after it move under a click aimed at one of them.
    page.wait_for_selector("body[data-loaded='true']", timeout=15_000)


def open_section(page: Any, name: str) -> None:
    """Open a section and let its loading finish (a late answer re-renders what a test may be typing in)."""
    page.click(f"#nav a[data-section={name}]")
    page.wait_for_selector(f"#{name}:not([hidden])")
    page.wait_for_load_state("networkidle")


def shot(page: Any, name: str, lang: str) -> None:
    if SCREENSHOTS and (lang == "en" or name in EVERY_LANGUAGE):
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}-{lang}.png"), full_page=name != "phone")


def money(page: Any, value: float) -> str:
    """An amount in US dollars as the page's language writes it (1,25 US$ in Vietnamese)."""
    script = (
        "([v]) => new Intl.NumberFormat(document.documentElement.lang.slice(0, 2),"
        " {style: 'currency', currency: 'USD', maximumFractionDigits: 4}).format(v)"
    )
    return str(page.evaluate(script, [value]))


def params_of(route: Any) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(route.request.url).query).items()}


def error(code: str, message: str, status: int, param: str | None = None) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 403: "permission_error", 404: "not_found_error"}[status]
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------- usage


def usage_rows(group: str) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in (3, 1)]
    base = {"served": 1, "refused": 0, "refused_statuses": {}, "estimated_requests": 0, "byok_cost_usd": 0.0}
    if group == "day":
        return [
            {
                **base,
                "day": days[0],
                "requests": 4,
                "input_tokens": 300,
                "output_tokens": 100,
                "cost_usd": 0.5,
                "unpriced_requests": 0,
            },
            {
                **base,
                "day": days[1],
                "requests": 2,
                "input_tokens": 200,
                "output_tokens": 50,
                "cost_usd": None,
                "unpriced_requests": 2,
            },
        ]
    if group in ("hour", "month"):
        return []
    names = {
        "model": ["gpt-4o", EVIL],
        "provider": ["campus", "groq"],
        "key": ["key_a", "key_b"],
        "user": ["usr_a", None],
    }
    rows = []
    for value, cost in zip(names[group], (0.5, 0.125), strict=True):
        row = {
            **base,
            group: value,
            "requests": 3,
            "input_tokens": 250,
            "output_tokens": 75,
            "cost_usd": cost,
            "unpriced_requests": 0,
        }
        if group == "key":
            row["key_alias"] = f"alias-{value}"
        if group == "user":
            row["user_name"] = "Ada" if value else None
        rows.append(row)
    return rows


def answer_usage(asked: list[dict[str, str]]) -> Any:
    def answer(route: Any) -> None:
        query = params_of(route)
        asked.append(query)
        group = query.get("group_by", "")
        if query.get("format") == "csv":
            route.fulfill(status=200, body=f"{group},requests\r\nx,1\r\n", headers={"content-type": "text/csv"})
            return
        unpriced = [{"provider_id": "campus", "model": "mystery", "requests": 2}] if group == "day" else []
        body = {"object": "list", "group_by": [group], "data": usage_rows(group), "unpriced_models": unpriced}
        route.fulfill(status=200, json=body)

    return answer


def test_usage_draws_charts_with_tables_and_exports_csv(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    asked: list[dict[str, str]] = []
    page.route(re.compile(r".*/v1/usage(\?.*)?$"), answer_usage(asked))
    sign_in(page, gateway)
    open_section(page, "usage")
    expect(page.locator("#usage-title")).to_have_text(say(lang, "usage.title"))
    charts = page.locator("#usage-time-view svg.chart")
    expect(charts).to_have_count(3)
    bars = charts.first.locator("rect.chart-bar")
    assert 30 <= bars.count() <= 31  # one per day of the last 30 days, empty days as zero
    today = datetime.now(UTC).date()
    three_days_ago = charts.first.locator(f"rect[data-label='{(today - timedelta(days=3)).isoformat()}']")
    expect(three_days_ago).to_have_attribute("data-value", "4")
    tokens_chart = charts.nth(1).locator(f"rect[data-label='{(today - timedelta(days=1)).isoformat()}']")
    expect(tokens_chart).to_have_attribute("data-value", "250")
    time_table = page.locator("#usage-time-view table")
    expect(time_table.locator("tbody tr")).to_have_count(2)  # the table under the charts: days with requests
    expect(time_table).to_contain_text(say(lang, "usage.costUnknown"))  # unknown, never $0
    expect(page.locator("#usage-summary")).to_contain_text("mystery")
    day_query = next(q for q in asked if q.get("group_by") == "day")
    assert day_query["start"] < day_query["end"]

    breakdown = page.locator("#usage-breakdown-view")
    expect(breakdown.locator("svg.chart rect.chart-bar")).to_have_count(2)
    expect(breakdown.locator("table")).to_contain_text(EVIL)  # a client's model name, shown as text
    assert page.evaluate("window.pwned") is None
    options = page.locator("#usage-dimension option")
    expect(options).to_have_count(5)  # key, user, team, model, provider: this gateway has teams
    page.select_option("#usage-dimension", "key")
    expect(breakdown.locator("table")).to_contain_text("alias-key_a (key_a)")
    expect(breakdown.locator("figcaption")).to_have_text(
        say(lang, "usage.spendBy", dimension=say(lang, "usage.by.key"))
    )

    with page.expect_download() as downloaded:
        page.click("#usage-breakdown-csv")
    assert Path(downloaded.value.path()).read_bytes() == b"key,requests\r\nx,1\r\n"
    assert downloaded.value.suggested_filename == "anygate-usage-key.csv"
    assert any(q.get("format") == "csv" and q.get("group_by") == "key" for q in asked)

    page.select_option("#uq-period", "custom")
    page.fill("#uq-from", "2026-01-01")
    page.fill("#uq-until", "2026-03-31")
    page.select_option("#uq-bucket", "month")
    page.fill("#uq-provider", "campus")
    page.click("#usage-filters button[type=submit]")
    expect(charts.first.locator("rect.chart-bar")).to_have_count(3)  # January to March
    month_query = next(q for q in reversed(asked) if q.get("group_by") == "month")
    assert month_query["start"].startswith("2026-01-01T00:00:00") and month_query["end"].startswith(
        "2026-04-01T00:00:00"
    )
    assert month_query["provider"] == "campus"
    page.select_option("#uq-period", "30d")
    page.click("#usage-filters button[type=submit]")
    shot(page, "usage", lang)


def test_a_key_holder_sees_its_own_usage_without_user_or_team_breakdowns(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    forbidden = error("admin_required", "admin only", 403)
    page.route("**/v1/keys", lambda route: route.fulfill(status=403, json=forbidden))
    page.route("**/v1/users", lambda route: route.fulfill(status=403, json=forbidden))
    page.route(re.compile(r".*/v1/usage(\?.*)?$"), answer_usage([]))
    sign_in(page, gateway)
    expect(page.locator("#nav a[data-section=people]")).to_be_hidden()
    open_section(page, "usage")
    expect(page.locator("#usage-time-view svg.chart")).to_have_count(3)
    values = page.locator("#usage-dimension option").evaluate_all("(options) => options.map((o) => o.value)")
    assert values == ["key", "model", "provider"]
    expect(page.locator("#uq-user")).to_be_hidden()


# ---------------------------------------------------------------------------------------- requests


def request_record(number: int, **fields: Any) -> dict[str, Any]:
    record = {
        "request_id": f"req-{number}",
        "created_at": "2026-12-03T08:15:00Z",
        "route": "chat/completions",
        "key_id": "key_a",
        "user_id": "usr_a",
        "provider": "campus",
        "model": "fake-model",
        "status": 200,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cached_input_tokens": 1000,
        "cache_write_tokens": 0,
        "reasoning_tokens": 64,
        "audio_tokens": 0,
        "image_tokens": 0,
        "usage_source": "reported",
        "cost_usd": 0.0042,
        "cost_source": "configured",
        "latency_ms": 812.4,
        "ttft_ms": 240.0,
        "byok": False,
        "error": None,
    }
    return {**record, **fields}


def test_requests_filter_page_and_open_one(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    first = [
        request_record(1),
        request_record(2, status=429, usage_source="estimated", cost_usd=None, error="budget", model=EVIL),
    ]
    pages = {None: (first, "cur-2"), "cur-2": ([request_record(3)], None)}
    asked: list[dict[str, str]] = []

    def answer_list(route: Any) -> None:
        query = params_of(route)
        asked.append(query)
        records, next_cursor = pages[query.get("cursor")]
        route.fulfill(status=200, json={"object": "list", "data": records, "next_cursor": next_cursor})

    page.route(re.compile(r".*/v1/requests(\?.*)?$"), answer_list)
    page.route("**/v1/requests/req-2", lambda route: route.fulfill(status=200, json=first[1]))
    sign_in(page, gateway)
    open_section(page, "requests")
    rows = page.locator("#requests-list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text(say(lang, "requests.usage.estimated"))
    expect(rows.nth(1)).to_contain_text(EVIL)
    expect(rows.nth(0)).to_contain_text("1,200 / 300" if lang != "vi" else "1.200 / 300")
    expect(page.locator("#requests-prev")).to_be_disabled()

    page.fill("#rq-provider", "campus")
    page.fill("#rq-status", "429")
    # The rows are two before and after: wait for the filtered request's answer (given by ``answer_list``,
    # which records the query), not for the rows.
    with page.expect_response(lambda answer: "/v1/requests?" in answer.url and "provider=campus" in answer.url):
        page.click("#requests-filters button[type=submit]")
    expect(rows).to_have_count(2)
    assert asked[-1]["provider"] == "campus" and asked[-1]["status"] == "429" and asked[-1]["limit"] == "50"

    page.click("#requests-next")
    expect(rows).to_have_count(1)
    assert asked[-1]["cursor"] == "cur-2" and asked[-1]["provider"] == "campus"
    expect(page.locator("#requests-next")).to_be_disabled()
    expect(page.locator("#requests-page")).to_have_text(say(lang, "requests.page", n=2))
    page.click("#requests-prev")
    expect(rows).to_have_count(2)
    assert "cursor" not in asked[-1]

    rows.nth(1).locator("button.link").click()
    detail = page.locator("#request-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(say(lang, "requests.field.cached_input_tokens"))
    expect(detail).to_contain_text(say(lang, "requests.field.ttft_ms"))
    expect(detail).to_contain_text("budget")
    expect(detail).to_contain_text(say(lang, "usage.costUnknown"))
    assert page.evaluate("window.pwned") is None
    shot(page, "requests", lang)


# ------------------------------------------------------------------------------------ users and keys


def test_users_and_keys_are_managed_against_the_gateway(page: Any, gateway: Served, lang: str) -> None:
    """Create a user and a key for it, edit the key, revoke it: revoked keys move apart, never revocable."""
    from playwright.sync_api import expect

    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, gateway)
    open_section(page, "people")
    expect(page.locator("#teams-panel")).to_be_visible()  # this gateway has teams (GET /v1/teams answers 200)
    name = f"Ada {lang}"
    page.fill("#uf-name", name)
    budget = page.locator("#uf-budgets .budget-row").first
    budget.locator("[name=usd]").fill("5")
    budget.locator("[name=window]").select_option("monthly")
    page.click("#uf-submit")
    expect(page.locator("#notice")).to_have_text(say(lang, "users.saved", name=name))
    user_row = page.locator("#users-list tbody tr", has_text=name)
    expect(user_row).to_contain_text(money(page, 5))
    user_id = user_row.locator("td").nth(1).inner_text().strip()

    user_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {name}").click()
    expect(page.locator("#uf-name")).to_be_focused()
    page.fill("#uf-rpm", "30")
    with page.expect_request(lambda r: r.method == "PATCH") as patched:
        page.click("#uf-submit")
    assert patched.value.post_data_json == {"limits": {"rpm": 30}}  # only what changed
    expect(user_row).to_contain_text(say(lang, "keys.limits.rpm", n=30))
    stored = gateway.admin("GET", f"/v1/users/{user_id}").json()
    assert stored["limits"]["rpm"] == 30 and stored["budget"]["usd"] == 5.0

    open_section(page, "keys")
    alias = f"laptop-{lang}"
    page.fill("#kf-alias", alias)
    page.fill("#kf-user", user_id)
    page.fill("#kf-providers", "campus")
    page.click("#kf-submit")
    expect(page.locator("#key-secret")).to_be_visible()
    active = page.locator("#keys-active")
    key_row = active.locator("tbody tr", has_text=alias)
    expect(key_row).to_contain_text(say(lang, "keys.createdBy.admin"))
    expect(key_row).to_contain_text("campus")

    key_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {alias}").click()
    expect(page.locator("#kf-alias")).to_be_focused()
    page.fill("#kf-alias", f"{alias}-2")
    page.fill("#kf-expires", "2099-01-01T12:00")
    with page.expect_request(lambda r: r.method == "PATCH") as patched:
        page.click("#kf-submit")
    body = patched.value.post_data_json
    assert set(body) == {"alias", "expires_at"} and body["alias"] == f"{alias}-2"
    expect(page.locator("#notice")).to_have_text(say(lang, "keys.saved", alias=f"{alias}-2"))
    key_row = active.locator("tbody tr", has_text=f"{alias}-2")
    expect(key_row).to_contain_text("2099")

    open_section(page, "people")
    page.locator("#users-list tbody tr", has_text=name).get_by_role(
        "button", name=f"{say(lang, 'users.showKeys')} {name}", exact=True
    ).click()
    expect(page.locator("#user-detail")).to_contain_text(f"{alias}-2")
    expect(page.locator("#user-detail")).to_contain_text(say(lang, "keys.status.active"))
    shot(page, "people", lang)

    open_section(page, "keys")
    page.fill("#kf-alias", f"desktop-{lang}")  # one that stays active beside the revoked one
    page.click("#kf-submit")
    expect(active.locator("tbody tr", has_text=f"desktop-{lang}")).to_have_count(1)
    key_row.get_by_role("button", name=f"{say(lang, 'keys.revoke')} {alias}-2").click()
    expect(page.locator("#notice")).to_have_text(say(lang, "keys.revoked", alias=f"{alias}-2"))
    inactive = page.locator("#keys-inactive")
    revoked_row = inactive.locator("tbody tr", has_text=f"{alias}-2")
    expect(revoked_row).to_contain_text(say(lang, "keys.status.revoked"))
    expect(revoked_row.get_by_role("button")).to_have_count(0)  # never a Revoke (nor an Edit) button
    expect(active.locator("tbody tr", has_text=f"{alias}-2")).to_have_count(0)
    shot(page, "keys", lang)


def test_an_expired_key_is_shown_apart_and_may_get_a_later_expiry(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    keys = [
        {"id": "key_live", "alias": "live", "status": "active", "created_by": "cli", "budget": None, "limits": None},
        {
            "id": "key_old",
            "alias": "old",
            "status": "expired",
            "expires_at": "2026-01-01T00:00:00Z",
            "created_by": "key_live",
        },
    ]
    caller = {"key_id": "admin", "role": "admin", "user_id": None, "team_id": None}
    answer = {"object": "list", "data": keys, "caller": caller}
    page.route("**/v1/keys", lambda route: route.fulfill(status=200, json=answer))
    sign_in(page, gateway)
    open_section(page, "keys")
    active, inactive = page.locator("#keys-active"), page.locator("#keys-inactive")
    expect(active.locator("tbody tr")).to_have_count(1)
    expect(active).to_contain_text(say(lang, "keys.createdBy.cli"))
    old = inactive.locator("tbody tr")
    expect(old).to_contain_text(say(lang, "keys.status.expired"))
    expect(old).to_contain_text("live (key_live)")  # made by another key: named by its alias
    expect(old.get_by_role("button", name=f"{say(lang, 'keys.revoke')} old")).to_have_count(0)
    expect(old.get_by_role("button", name=f"{say(lang, 'keys.edit')} old")).to_have_count(1)


# -------------------------------------------------------------------------------------------- teams


def test_teams_appear_when_the_gateway_has_them_and_import_a_roster(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    team = {
        "id": "team_cs",
        "name": "COMP318",
        "budgets": [
            {"usd": 50.0, "window": "monthly", "mode": "hard"},
            {"requests": 500, "window": "12h", "mode": "soft"},
        ],
        "limits": {"rpm": 60},
        "models": ["groq/*"],
        "providers": None,
    }
    # TeamDetail, RosterResult (api/views.py)
    grace = {"id": "usr_1", "name": "Grace", "budget": None, "budgets": [], "limits": None, "team_id": "team_cs"}
    spend = {"tokens": 1200, "usd": 1.25, "requests": 7}
    detail = {**team, "members": [grace], "key_count": 1, "spend": spend, "budget_use": []}
    posted: list[Any] = []
    rosters: list[tuple[str, Any]] = []
    secret = "sk-ag-roster-secret-2"

    def answer_teams(route: Any) -> None:
        if route.request.method == "POST":
            posted.append(route.request.post_data_json)
            route.fulfill(status=201, json={**team, **route.request.post_data_json, "id": "team_new"})
        else:
            route.fulfill(status=200, json={"object": "list", "data": [team]})

    def answer_roster(route: Any) -> None:
        rosters.append((route.request.headers["content-type"], route.request.post_data_json))
        rows = [
            {"user_id": "usr_2", "name": "Alan", "status": "created", "key_id": "key_2", "key": secret},
            {"user_id": "usr_1", "name": "Grace", "status": "kept", "key_id": None, "key": None},
        ]
        route.fulfill(status=200, json={"team_id": "team_cs", "created": 1, "kept": 1, "data": rows})

    page.route("**/v1/teams", answer_teams)
    page.route("**/v1/teams/team_cs", lambda route: route.fulfill(status=200, json=detail))
    page.route("**/v1/teams/team_cs/roster", answer_roster)
    sign_in(page, gateway)
    open_section(page, "people")
    panel = page.locator("#teams-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#teams-list")).to_contain_text("COMP318")
    expect(panel.locator("#teams-list")).to_contain_text(say(lang, "period.hours", n=12))
    expect(page.locator("#uf-team option[value=team_cs]")).to_have_text("COMP318")

    page.get_by_role("button", name=f"{say(lang, 'teams.open')} COMP318").click()
    team_detail = page.locator("#team-detail")
    expect(team_detail).to_contain_text("Grace")
    expect(team_detail).to_contain_text(money(page, 1.25))
    page.fill("#roster-text", "name,email\nAlan,alan@example.edu\nGrace,grace@example.edu\n")
    page.click("#roster-import")
    expect(page.locator("#roster-result input")).to_have_value("sk-ag-roster-secret-2")  # the kept one has none
    expect(page.locator("#notice")).to_have_text(say(lang, "teams.roster.done", n=1, kept=1))
    assert rosters == [("application/json", {"users": [{"name": "Alan"}, {"name": "Grace"}]})]
    shot(page, "teams", lang)

    page.fill("#tf-name", "COMP420")
    budget = page.locator("#tf-budgets .budget-row").first
    budget.locator("[name=usd]").fill("20")
    budget.locator("[name=window]").select_option("hours")
    budget.locator("[name=hours]").fill("24")
    page.click("#tf-submit")
    expect(page.locator("#notice")).to_have_text(say(lang, "teams.saved", name="COMP420"))
    assert posted == [
        {
            "name": "COMP420",
            "models": None,
            "providers": None,
            "limits": None,
            "budgets": [{"usd": 20, "window": "24h", "mode": "hard"}],
        }
    ]


# ---------------------------------------------------------------------------------------- providers


def test_a_keyless_provider_is_added_priced_and_checked_in_words(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    provider_id = f"local-{lang}"
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    label = f"Local {lang}"
    page.fill("#pf-id", provider_id)
    page.fill("#pf-name", label)
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.select_option("#pf-auth", "none")
    expect(page.locator("#pf-api-key")).to_be_disabled()
    expect(page.locator("#pf-auth-none")).to_be_visible()
    page.click("#pf-add-price")
    row = page.locator("#pf-prices .price-row").first
    row.locator("[name=price_model]").fill("fake-model")
    row.locator("[name=price_input]").fill("0.5")
    row.locator("[name=price_output]").fill("1.5")
    page.check("#pf-private")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/providers")) as sent:
        page.click("#pf-submit")
    body = sent.value.post_data_json
    assert body["auth"] == "none" and body["prices"] == {"fake-model": {"input": 0.5, "output": 1.5}}
    assert "api_key" not in body
    expect(page.locator("#notice")).to_have_text(say(lang, "providers.saved", id=provider_id))
    listed = page.locator("#providers-list tbody tr", has_text=provider_id)
    expect(listed).to_contain_text(say(lang, "providers.keyless"))
    expect(listed).not_to_contain_text(say(lang, "providers.configured"))

    listed.get_by_role("button", name=f"{say(lang, 'providers.test')} {label}").click()
    test_panel = page.locator("#provider-test")
    expect(test_panel).to_contain_text(say(lang, "providers.testWithoutKey"))
    expect(test_panel).to_contain_text(say(lang, "providers.capability.stream_usage"))
    expect(test_panel).not_to_contain_text("stream_usage")
    expect(test_panel).to_contain_text(say(lang, "providers.auth.none"))

    page.click("#health-check")
    expect(listed).to_contain_text(say(lang, "providers.health.withoutKey"))
    campus = page.locator("#providers-list tbody tr", has_text="Campus LLM")
    expect(campus).to_contain_text(say(lang, "providers.health.withKey"))

    listed.get_by_role("button", name=f"{say(lang, 'providers.prices')} {label}").click()
    prices = page.locator("#provider-prices")
    priced_row = prices.locator("tbody tr", has_text=f"{provider_id}/fake-model")
    expect(priced_row).to_contain_text(money(page, 0.5))
    expect(priced_row).to_contain_text(say(lang, "providers.price.from.configured"))
    expect(prices.locator("tbody tr", has_text=f"{provider_id}/fake-embed")).to_contain_text(
        say(lang, "providers.price.unknown")
    )
    shot(page, "providers", lang)

    listed.get_by_role("button", name=f"{say(lang, 'providers.edit')} {label}").click()
    expect(page.locator("#pf-name")).to_be_focused()
    expect(page.locator("#pf-auth")).to_have_value("none")
    expect(page.locator("#pf-prices [name=price_model]")).to_have_value("fake-model")
    page.locator("#pf-prices [name=price_output]").fill("2")
    with page.expect_response(lambda r: r.request.method == "PUT") as put:
        page.click("#pf-submit")
    assert put.value.ok and put.value.request.post_data_json == {"prices": {"fake-model": {"input": 0.5, "output": 2}}}
    stored = gateway.admin("GET", f"/v1/providers/{provider_id}").json()
    assert stored["auth"] == "none" and stored["prices"]["fake-model"]["output"] == 2
    gateway.admin("DELETE", f"/v1/providers/{provider_id}")


# ----------------------------------------------------------------------------- errors, phone, safety


def test_api_errors_with_a_known_code_are_shown_in_the_chosen_language(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    page.fill("#pf-id", "campus")  # the environment's provider: read-only here (409 read_only_provider)
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.check("#pf-private")
    page.click("#pf-submit")
    expect(page.locator("#error-text")).to_have_text(say(lang, "apiError.read_only_provider"))
    expect(page.locator("#error-detail")).to_contain_text("read-only")  # the gateway's own words beside

    refusal = error("too_many_rights", "budget.usd: 9 is more than the calling key's 5", 403, "budget.usd")
    page.route(
        "**/v1/keys",
        lambda route: route.fulfill(status=403, json=refusal) if route.request.method == "POST" else route.continue_(),
    )
    open_section(page, "keys")
    page.fill("#kf-alias", "greedy")
    page.click("#kf-submit")
    expect(page.locator("#error-text")).to_have_text(say(lang, "apiError.too_many_rights", param="budget.usd"))

    unknown = {
        "error": {"message": "Something new went wrong", "type": "server_error", "param": None, "code": "brand_new"}
    }
    page.route("**/v1/users", lambda route: route.fulfill(status=500, json=unknown))
    open_section(page, "people")
    expect(page.locator("#error-text")).to_have_text("Something new went wrong")  # an unknown code: as it came


def test_a_phone_screen_keeps_the_header_short_and_nothing_wider_than_the_screen(
    browser: Any, gateway: Served, lang: str
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 375, "height": 667}, locale="en-US", is_mobile=True)
    context.set_default_timeout(5000)
    context.add_init_script(f"localStorage.setItem('anygate.lang', {json.dumps(lang)});")
    try:
        page = context.new_page()
        page.route(re.compile(r".*/v1/usage(\?.*)?$"), answer_usage([]))
        sign_in(page, gateway)
        expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
        for section in ("providers", "usage", "people", "keys", "models"):
            open_section(page, section)
            page.wait_for_timeout(100)
            header = page.locator(".topbar").bounding_box()
            assert header is not None and header["height"] <= 0.12 * 667, (section, header)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (section, width)
        open_section(page, "usage")
        expect(page.locator("#usage-time-view svg.chart")).to_have_count(3)
        shot(page, "phone", lang)
    finally:
        context.close()


def test_untrusted_names_from_providers_are_only_text(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    evil = {
        "id": "evil",
        "name": EVIL,
        "type": "custom",
        "base_url": "http://x.example/v1",
        "configured": False,
        "healthy": None,
        "default": False,
        "models": [EVIL],
        "origin": "store",
        "capabilities": {"chat": True},
    }
    page.route("**/v1/providers", lambda route: route.fulfill(status=200, json={"object": "list", "data": [evil]}))
    page.route(
        "**/v1/models",
        lambda route: route.fulfill(
            status=200,
            json={
                "object": "list",
                "data": [{"id": f"evil/{EVIL}", "object": "model", "created": 0, "owned_by": "evil"}],
            },
        ),
    )
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text(EVIL)
    open_section(page, "models")
    expect(page.locator("#models-list")).to_contain_text(EVIL)
    open_section(page, "creds")
    expect(page.locator("#creds-list")).to_contain_text(EVIL)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.pwned") is None
