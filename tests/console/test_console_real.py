"""The Requests and Teams pages against the real served gateway, with no answer made up in the browser:
requests go through the gateway to the fake upstream, then the console lists, filters, pages and opens
them; a team is created in the console with two budgets, a CSV roster imported, its keys shown once and
usable, its members and key count read back. Each in English, Vietnamese and Chinese.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.console import test_console, test_console_flows
from tests.console.test_console import ADMIN_KEY, Served
from tests.console.test_console_flows import LANGS, money, open_section, say, shot, sign_in
from tests.support.fake_upstream import Reply

# One browser and one gateway for this module (test_console's fixtures); every language shares the gateway,
# so each test names what it makes after its language.
browser = test_console.browser
gateway = test_console.gateway
page = test_console_flows.page

pytestmark = pytest.mark.browser

PAGE_SIZE = 50  # requests.js


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(gateway: Served, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request to the gateway with ``key``: the status and the parsed body."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    request = urllib.request.Request(gateway.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


def chat(gateway: Served, key: str) -> int:
    body = {"model": "campus/fake-model", "messages": [{"role": "user", "content": "hi"}]}
    return call(gateway, "POST", "/v1/chat/completions", key, body)[0]


# ------------------------------------------------------------------------------------------ requests


def test_the_request_log_lists_filters_pages_and_opens_real_requests(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    status, made = call(gateway, "POST", "/v1/keys", ADMIN_KEY, {"alias": f"log-{lang}"})
    assert status in (200, 201), made
    key, key_id = made["key"], made["id"]
    for _ in range(PAGE_SIZE):
        assert chat(gateway, key) == 200
    gateway.upstream.script(Reply.error(400, "the upstream refused"))
    assert chat(gateway, key) == 400  # one row of another status, the newest

    sign_in(page, gateway)
    open_section(page, "requests")
    page.fill("#rq-key", key_id)
    page.click("#requests-filters button[type=submit]")
    rows = page.locator("#requests-list tbody tr")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(rows.first).to_contain_text("400")
    expect(page.locator("#requests-page")).to_have_text(say(lang, "requests.page", n=1))
    expect(page.locator("#requests-prev")).to_be_disabled()

    page.click("#requests-next")  # the 51st row, the oldest, on a page of its own
    expect(rows).to_have_count(1)
    expect(page.locator("#requests-page")).to_have_text(say(lang, "requests.page", n=2))
    expect(page.locator("#requests-next")).to_be_disabled()
    page.click("#requests-prev")
    expect(rows).to_have_count(PAGE_SIZE)

    page.fill("#rq-status", "400")
    page.click("#requests-filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(page.locator("#requests-next")).to_be_disabled()
    rows.first.locator("button.link").click()
    detail = page.locator("#request-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(key_id)
    expect(detail).to_contain_text("fake-model")
    expect(detail).to_contain_text("upstream_http_400")  # the error's code, never the upstream's text
    listed = gateway.admin("GET", f"/v1/requests?key_id={key_id}&status=400").json()["data"]
    expect(detail).to_contain_text(listed[0]["request_id"])

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/requests" in r.url else None)
    page.fill("#rq-status", "4xx")  # not a status: the form says so and asks the API nothing
    page.click("#requests-filters button[type=submit]")
    page.wait_for_timeout(300)
    assert asked == []
    assert page.locator("#rq-status").evaluate("input => input.validity.patternMismatch")

    page.fill("#rq-status", "404")
    page.click("#requests-filters button[type=submit]")
    expect(page.locator("#requests-list")).to_have_text(say(lang, "requests.empty"))


# --------------------------------------------------------------------------------------------- teams


def test_a_team_is_created_with_two_budgets_and_a_roster_is_imported(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, gateway)
    open_section(page, "people")
    expect(page.locator("#teams-panel")).to_be_visible()  # this gateway has teams

    name = f"COMP318 {lang}"
    page.fill("#tf-name", name)
    first = page.locator("#tf-budgets .budget-row").first
    first.locator("[name=usd]").fill("20")
    first.locator("[name=window]").select_option("monthly")
    page.click("#tf-add-budget")
    second = page.locator("#tf-budgets .budget-row").nth(1)
    second.locator("[name=requests]").fill("100")
    second.locator("[name=window]").select_option("hours")
    second.locator("[name=hours]").fill("12")
    second.locator("[name=mode]").select_option("soft")
    page.click("#tf-submit")
    expect(page.locator("#notice")).to_have_text(say(lang, "teams.saved", name=name))

    team_row = page.locator("#teams-list tbody tr", has_text=name)
    expect(team_row).to_contain_text(say(lang, "period.hours", n=12))
    team_id = team_row.locator("td").nth(1).inner_text().strip()
    stored = gateway.admin("GET", f"/v1/teams/{team_id}").json()
    assert stored["name"] == name
    assert [(b.get("usd"), b.get("requests"), b["window"], b["mode"]) for b in stored["budgets"]] == [
        (20.0, None, "monthly", "hard"),
        (None, 100, "12h", "soft"),
    ]

    team_row.get_by_role("button", name=f"{say(lang, 'teams.open')} {name}").click()
    detail = page.locator("#team-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(say(lang, "teams.noMembers"))
    roster = 'name,email\nAlan Turing,alan@example.edu\n"Lovelace, Ada",ada@example.edu\n'
    page.fill("#roster-text", roster)
    with page.expect_request(lambda r: r.url.endswith("/roster")) as posted:
        page.click("#roster-import")
    assert posted.value.post_data_json == {"users": [{"name": "Alan Turing"}, {"name": "Lovelace, Ada"}]}
    secrets = page.locator("#roster-result input")
    expect(secrets).to_have_count(2)
    expect(page.locator("#notice")).to_have_text(say(lang, "teams.roster.done", n=2, kept=0))
    shown = [secrets.nth(i).input_value() for i in range(2)]
    assert all(secret.startswith("sk-") for secret in shown) and shown[0] != shown[1]
    assert call(gateway, "GET", "/v1/models", shown[0])[0] == 200  # a roster key works...
    asked = {"model": "campus/fake-model", "messages": [{"role": "user", "content": "hi"}]}
    status, refused = call(gateway, "POST", "/v1/chat/completions", shown[0], asked)
    assert (status, refused["error"]["code"]) == (403, "price_unknown")  # ...bound by the team's hard USD budget

    members_table = detail.locator("table").first  # the roster's result is the other one
    expect(members_table.locator("tbody tr", has_text="Alan Turing")).to_have_count(1)
    expect(members_table.locator("tbody tr", has_text="Lovelace, Ada")).to_have_count(1)
    stats = detail.locator(".stat strong")
    expect(stats.nth(0)).to_have_text("2")  # members
    expect(stats.nth(1)).to_have_text("2")  # keys
    members = {m["name"]: m["id"] for m in gateway.admin("GET", f"/v1/teams/{team_id}").json()["members"]}
    expect(detail).to_contain_text(members["Alan Turing"])

    # shown once: the same roster again makes nothing, and the secrets are gone from the page
    page.fill("#roster-text", roster)
    page.click("#roster-import")
    expect(page.locator("#notice")).to_have_text(say(lang, "teams.roster.done", n=0, kept=2))
    expect(secrets).to_have_count(0)
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    assert not any(secret in page.content() for secret in shown)

    open_section(page, "people")
    spent = gateway.admin("GET", f"/v1/teams/{team_id}").json()["spend"]["usd"]
    page.locator("#teams-list tbody tr", has_text=name).get_by_role(
        "button", name=f"{say(lang, 'teams.open')} {name}"
    ).click()
    expect(detail.locator(".stat strong").nth(2)).to_have_text(money(page, spent))


# ---------------------------------------------------------------------------------------------- keys


def row_of(page: Any, table: Any, key_id: str) -> Any:
    """The row of the key ``key_id`` (by its id column: other rows may name it as their maker)."""
    return table.locator("tbody tr").filter(has=page.locator("td:nth-child(2)", has_text=key_id))


def test_a_key_holder_manages_its_own_key_and_the_keys_it_made(page: Any, gateway: Served, lang: str) -> None:
    """Signed in with a user key: the Keys page lists that key and its family only, makes a child, narrows
    it (a widening is refused in the chosen language) and revokes it; its own key has no Revoke button."""
    from playwright.sync_api import expect

    page.on("dialog", lambda dialog: dialog.accept())
    status, user = call(gateway, "POST", "/v1/users", ADMIN_KEY, {"name": f"holder {lang}"})
    assert status == 201, user
    own_alias, other_alias = f"mine-{lang}", f"theirs-{lang}"
    _, own = call(
        gateway, "POST", "/v1/keys", ADMIN_KEY, {"alias": own_alias, "user_id": user["id"], "limits": {"rpm": 60}}
    )
    _, other = call(gateway, "POST", "/v1/keys", ADMIN_KEY, {"alias": other_alias, "user_id": user["id"]})
    _, older_child = call(gateway, "POST", "/v1/keys", own["key"], {"alias": f"ci-{lang}"})
    _, grandchild = call(gateway, "POST", "/v1/keys", older_child["key"], {"alias": f"ci-job-{lang}"})

    sign_in(page, gateway, own["key"])
    expect(page.locator("body")).to_have_attribute("data-role", "user")
    expect(page.locator("#admin-badge")).to_be_hidden()
    open_section(page, "keys")
    active = page.locator("#keys-active")
    expect(active.locator("tbody tr")).to_have_count(3)  # itself, its child and grandchild; not its user's other key
    expect(active).not_to_contain_text(other_alias)
    mine = row_of(page, active, own["id"])
    expect(mine).to_contain_text(say(lang, "keys.thisKey"))
    expect(mine.get_by_role("button", name=f"{say(lang, 'keys.revoke')} {own_alias}")).to_have_count(0)
    expect(row_of(page, active, grandchild["id"])).to_contain_text(f"ci-{lang} ({older_child['id']})")
    expect(page.locator("#kf-user")).to_be_hidden()  # a key holder's keys are its user's

    alias = f"laptop-{lang}"
    page.fill("#kf-alias", alias)
    page.click("#kf-submit")
    expect(page.locator("#key-secret")).to_be_visible()
    child_row = active.locator("tbody tr", has_text=alias)
    expect(child_row).to_contain_text(f"{own_alias} ({own['id']})")  # made by the signed-in key, named by its alias
    child_id = child_row.locator("td").nth(1).inner_text().strip()
    assert chat(gateway, page.locator("#key-secret-value").input_value()) == 200

    child_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {alias}").click()
    page.fill("#kf-rpm", "100")  # wider than its maker's 60: refused
    page.click("#kf-submit")
    expect(page.locator("#error-text")).to_have_text(say(lang, "apiError.too_many_rights", param="limits.rpm"))
    page.fill("#kf-rpm", "30")
    page.click("#kf-submit")
    expect(page.locator("#notice")).to_have_text(say(lang, "keys.saved", alias=alias))
    expect(child_row).to_contain_text(say(lang, "keys.limits.rpm", n=30))
    assert gateway.admin("GET", f"/v1/keys/{child_id}").json()["limits"]["rpm"] == 30

    child_row.get_by_role("button", name=f"{say(lang, 'keys.revoke')} {alias}").click()
    expect(page.locator("#notice")).to_have_text(say(lang, "keys.revoked", alias=alias))
    revoked = page.locator("#keys-inactive tbody tr", has_text=alias)
    expect(revoked).to_contain_text(say(lang, "keys.status.revoked"))
    expect(revoked.get_by_role("button")).to_have_count(0)
    assert gateway.admin("GET", f"/v1/keys/{child_id}").json()["status"] == "revoked"
    assert gateway.admin("GET", f"/v1/keys/{own['id']}").json()["status"] == "active"
    assert gateway.admin("GET", f"/v1/keys/{grandchild['id']}").json()["status"] == "active"
    shot(page, "keys-holder", lang)


def test_a_users_and_a_teams_keys_are_reissued_after_a_confirmation(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    team_id = f"reissue-{lang}"
    assert call(gateway, "POST", "/v1/teams", ADMIN_KEY, {"id": team_id, "name": f"Reissue {lang}"})[0] == 201
    names = [f"Ana {lang}", f"Bo {lang}"]
    roster = {"users": [{"name": n} for n in names], "key": {"models": ["campus/*"], "limits": {"rpm": 50}}}
    status, enrolled = call(gateway, "POST", f"/v1/teams/{team_id}/roster", ADMIN_KEY, roster)
    assert status == 200, enrolled
    first = {row["name"]: row for row in enrolled["data"]}

    sign_in(page, gateway)
    open_section(page, "people")
    button = page.locator("#users-list tbody tr", has_text=names[0]).get_by_role(
        "button", name=f"{say(lang, 'reissue.user')} {names[0]}"
    )
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/reissue") else None)
    page.once("dialog", lambda dialog: dialog.dismiss())  # not confirmed: nothing happens
    button.click()
    page.wait_for_timeout(300)
    assert asked == [] and chat(gateway, first[names[0]]["key"]) == 200

    questions: list[str] = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    button.click()
    expect(page.locator("#notice")).to_have_text(say(lang, "reissue.done", n=1))
    assert questions == [say(lang, "reissue.confirmUser", name=names[0])]
    secret = page.locator("#user-detail .reissued input")
    expect(secret).to_have_count(1)
    new_key = secret.input_value()
    assert chat(gateway, new_key) == 200 and chat(gateway, first[names[0]]["key"]) == 401
    listed = gateway.admin("GET", f"/v1/keys?user_id={first[names[0]]['user_id']}").json()["data"]
    assert sorted((k["alias"], k["status"], k["limits"]["rpm"]) for k in listed) == [
        (names[0], "active", 50),  # the same settings
        (names[0], "revoked", 50),
    ]

    page.get_by_role("button", name=f"{say(lang, 'teams.open')} Reissue {lang}").click()
    page.click("#team-reissue")
    expect(page.locator("#notice")).to_have_text(say(lang, "reissue.done", n=2))
    assert questions[-1] == say(lang, "reissue.confirmTeam", name=f"Reissue {lang}")
    secrets = page.locator("#team-detail .reissued input")
    expect(secrets).to_have_count(2)
    expect(page.locator("#user-detail")).to_be_hidden()  # its keys changed: the user's panel is not left stale
    shown = [secrets.nth(i).input_value() for i in range(2)]
    assert all(chat(gateway, s) == 200 for s in shown)
    assert chat(gateway, new_key) == 401 and chat(gateway, first[names[1]]["key"]) == 401
    kept = gateway.admin("GET", f"/v1/teams/{team_id}").json()
    assert kept["key_count"] == 2  # one live key per member, as before
    shot(page, "reissue", lang)
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    assert not any(s in page.content() for s in shown)  # shown once


# ------------------------------------------------------------------------------------------- budgets


def test_every_budget_of_a_user_and_a_key_is_edited_and_none_is_dropped(page: Any, gateway: Served, lang: str) -> None:
    """A user and a key with three budgets each: the forms show all three; a change elsewhere sends none of
    them; a budget changed, one removed and one added are saved as the list shown."""
    from playwright.sync_api import expect

    three = [
        {"tokens": 50000, "window": "daily"},
        {"usd": 20, "window": "monthly", "mode": "soft"},
        {"requests": 40, "window": "5h"},
    ]
    name = f"Budgets {lang}"
    status, user = call(gateway, "POST", "/v1/users", ADMIN_KEY, {"name": name, "budgets": three})
    assert status == 201, user
    alias = f"budgets-{lang}"
    status, key = call(
        gateway, "POST", "/v1/keys", ADMIN_KEY, {"alias": alias, "user_id": user["id"], "budgets": three}
    )
    assert status == 201, key

    sign_in(page, gateway)
    open_section(page, "people")
    user_row = page.locator("#users-list tbody tr", has_text=name)
    expect(user_row).to_contain_text(say(lang, "period.hours", n=5))  # every budget listed, not the first only
    user_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {name}").click()
    rows = page.locator("#uf-budgets .budget-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(2).locator("[name=hours]")).to_have_value("5")
    page.fill("#uf-rpm", "30")
    with page.expect_request(lambda r: r.method == "PATCH") as patched:
        page.click("#uf-submit")
    assert patched.value.post_data_json == {"limits": {"rpm": 30}}  # the budgets not touched: not sent
    expect(page.locator("#notice")).to_have_text(say(lang, "users.saved", name=name))
    assert len(gateway.admin("GET", f"/v1/users/{user['id']}").json()["budgets"]) == 3

    user_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {name}").click()
    expect(rows).to_have_count(3)
    rows.nth(1).locator("[name=usd]").fill("25")
    rows.nth(0).get_by_role("button", name=say(lang, "teams.form.removeBudget")).click()
    page.click("#uf-add-budget")
    added = rows.nth(2)
    added.locator("[name=tokens]").fill("300000")
    added.locator("[name=window]").select_option("weekly")
    with page.expect_response(lambda r: r.request.method == "PATCH") as answered:
        page.click("#uf-submit")
    assert answered.value.status == 200
    stored = gateway.admin("GET", f"/v1/users/{user['id']}").json()["budgets"]
    assert [(b.get("tokens"), b.get("usd"), b.get("requests"), b["window"], b["mode"]) for b in stored] == [
        (None, 25.0, None, "monthly", "soft"),
        (None, None, 40, "5h", "hard"),
        (300000, None, None, "weekly", "hard"),
    ]

    open_section(page, "keys")
    key_row = page.locator("#keys-active tbody tr", has_text=alias)
    key_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {alias}").click()
    key_rows = page.locator("#kf-budgets .budget-row")
    expect(key_rows).to_have_count(3)
    page.fill("#kf-alias", f"{alias}-2")
    with page.expect_request(lambda r: r.method == "PATCH") as patched:
        page.click("#kf-submit")
    assert patched.value.post_data_json == {"alias": f"{alias}-2"}
    expect(page.locator("#notice")).to_have_text(say(lang, "keys.saved", alias=f"{alias}-2"))
    key_row = page.locator("#keys-active tbody tr", has_text=f"{alias}-2")
    key_row.get_by_role("button", name=f"{say(lang, 'keys.edit')} {alias}-2").click()
    key_rows.nth(2).locator("[name=requests]").fill("20")
    with page.expect_response(lambda r: r.request.method == "PATCH") as answered:
        page.click("#kf-submit")
    assert answered.value.status == 200
    assert answered.value.request.post_data_json == {
        "budgets": [
            {"tokens": 50000, "window": "daily", "mode": "hard"},
            {"usd": 20, "window": "monthly", "mode": "soft"},
            {"requests": 20, "window": "5h", "mode": "hard"},
        ]
    }
    assert [b.get("requests") for b in gateway.admin("GET", f"/v1/keys/{key['id']}").json()["budgets"]] == [
        None,
        None,
        20,
    ]
    shot(page, "budgets", lang)


def test_a_roster_is_imported_with_budgets_limits_and_expiry_for_each_student(
    page: Any, gateway: Served, lang: str
) -> None:
    from playwright.sync_api import expect

    team_id = f"options-{lang}"
    assert call(gateway, "POST", "/v1/teams", ADMIN_KEY, {"id": team_id, "name": f"Options {lang}"})[0] == 201
    sign_in(page, gateway)
    open_section(page, "people")
    page.get_by_role("button", name=f"{say(lang, 'teams.open')} Options {lang}").click()
    options = page.locator("#team-detail #roster-options")
    options.locator("summary").click()
    expect(options.locator("summary")).to_have_text(say(lang, "teams.roster.options"))
    user_budget = page.locator("#ro-user-budgets .budget-row").first
    user_budget.locator("[name=requests]").fill("2")
    user_budget.locator("[name=window]").select_option("daily")
    page.click("#ro-add-user-budget")
    second = page.locator("#ro-user-budgets .budget-row").nth(1)
    second.locator("[name=tokens]").fill("40000")
    second.locator("[name=window]").select_option("hours")
    second.locator("[name=hours]").fill("5")
    page.fill("#ro-u-rpm", "30")
    key_budget = page.locator("#ro-key-budgets .budget-row").first
    key_budget.locator("[name=tokens]").fill("100000")  # USD would refuse this unpriced model
    key_budget.locator("[name=window]").select_option("weekly")
    page.fill("#ro-k-concurrency", "2")
    page.fill("#ro-expires", "2099-01-15T12:00")
    page.fill("#ro-models", "campus/*")
    page.fill("#roster-text", f"name\nGrace {lang}\n")
    with page.expect_request(lambda r: r.url.endswith("/roster")) as posted:
        page.click("#roster-import")
    body = posted.value.post_data_json
    assert body["users"] == [{"name": f"Grace {lang}"}]
    assert body["budgets"] == [
        {"requests": 2, "window": "daily", "mode": "hard"},
        {"tokens": 40000, "window": "5h", "mode": "hard"},
    ]
    assert body["limits"] == {"rpm": 30}
    key = body["key"]
    assert (key["budgets"], key["limits"], key["models"]) == (
        [{"tokens": 100000, "window": "weekly", "mode": "hard"}],
        {"concurrency": 2},
        ["campus/*"],
    )
    assert key["expires_at"].startswith("2099-01-15") and "providers" not in key
    expect(page.locator("#roster-result input")).to_have_count(1)
    secret = page.locator("#roster-result input").input_value()

    member = gateway.admin("GET", f"/v1/teams/{team_id}").json()["members"][0]
    assert [(b.get("requests"), b.get("tokens"), b["window"]) for b in member["budgets"]] == [
        (2, None, "daily"),
        (None, 40000, "5h"),
    ]
    assert member["limits"]["rpm"] == 30
    made = gateway.admin("GET", f"/v1/keys?user_id={member['id']}").json()["data"][0]
    assert (made["models"], made["limits"]["concurrency"], made["budgets"][0]["tokens"]) == (["campus/*"], 2, 100000)
    assert made["expires_at"].startswith("2099-01-15")
    assert chat(gateway, secret) == 200 and chat(gateway, secret) == 200
    assert chat(gateway, secret) == 429  # the student's 2 requests a day, from the roster form


def test_a_team_admin_manages_its_members_but_is_offered_no_team_changes(page: Any, gateway: Served, lang: str) -> None:
    from playwright.sync_api import expect

    team_id = f"ta-{lang}"
    assert call(gateway, "POST", "/v1/teams", ADMIN_KEY, {"id": team_id, "name": f"TA {lang}"})[0] == 201
    status, user = call(gateway, "POST", "/v1/users", ADMIN_KEY, {"name": f"ta {lang}", "team_id": team_id})
    assert status == 201, user
    status, made = call(
        gateway, "POST", "/v1/keys", ADMIN_KEY, {"alias": "ta", "user_id": user["id"], "role": "team_admin"}
    )
    assert status == 201, made

    sign_in(page, gateway, made["key"])
    open_section(page, "people")
    row = page.locator("#teams-list tr", has_text=f"TA {lang}")
    expect(row.get_by_role("button", name=f"{say(lang, 'teams.open')} TA {lang}")).to_be_visible()
    expect(row.get_by_role("button", name=f"{say(lang, 'keys.edit')} TA {lang}")).to_be_hidden()
    expect(row.get_by_role("button", name=f"{say(lang, 'providers.delete')} TA {lang}")).to_be_hidden()
    expect(page.locator("#team-form")).to_be_hidden()  # the server refuses a team admin any team change
    expect(page.locator("#user-form")).to_be_visible()  # its members it does manage
