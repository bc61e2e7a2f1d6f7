"""A list that reloads after a save, and an Edit clicked before or while the reload lands, on the users, keys
and teams lists against the real gateway. The reload is held by the browser (``page.route``) and let go on
the test's cue, so each order of events is played every run instead of once in a while:

- Edit clicked before the reload lands: the form shows what was saved, not the list as it was before;
- Edit pressed (mouse down) before the reload lands and released after it re-rendered the list: the press
  still opens the form (a button replaced between mousedown and mouseup gets no click at all: the form
  stayed the empty create form, one empty budget row, as test_console_real saw once in nine CI runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.console import test_console, test_console_flows
from tests.console.test_console import ADMIN_KEY, Served
from tests.console.test_console_flows import open_section, say, sign_in
from tests.console.test_console_real import call

# One browser and one gateway for this module (test_console's fixtures), one page a test.
browser = test_console.browser
gateway = test_console.gateway
page = test_console_flows.page

pytestmark = pytest.mark.browser

THREE_BUDGETS = [
    {"tokens": 50000, "window": "daily"},
    {"usd": 20, "window": "monthly", "mode": "soft"},
    {"requests": 40, "window": "5h"},
]


@pytest.fixture
def lang() -> str:
    return "en"  # the order of events is the same in every language (test_console_real covers them)


@dataclass(frozen=True)
class Listing:
    """One list with an edit form: where it is, which API it reloads from, and its form's ids."""

    section: str  # the nav section showing it
    path: str  # the API collection: POST makes a holder, GET lists them (the reload held), PATCH edits one
    label_field: str  # the field naming a holder ("name", or "alias" for keys)
    rows: str  # the list's rows
    form: str  # the form's id prefix (uf-budgets, kf-submit, ...)
    saved: str  # the catalog's notice for a save, with {name} or {alias}


LISTINGS = [
    Listing("people", "/v1/users", "name", "#users-list tbody tr", "uf", "users.saved"),
    Listing("keys", "/v1/keys", "alias", "#keys-active tbody tr", "kf", "keys.saved"),
    Listing("people", "/v1/teams", "name", "#teams-list tbody tr", "tf", "teams.saved"),
]
IDS = ["users", "keys", "teams"]


class HeldReloads:
    """The page's GETs of one list, held while ``holding`` until ``release``: a reload that lands late."""

    def __init__(self, page: Any, path: str) -> None:
        self.path = path
        self.holding = False
        self.held: list[Any] = []
        page.route(lambda url: urlparse(url).path == path, self._route)

    def is_reload(self, request: Any) -> bool:
        return bool(request.method == "GET" and urlparse(request.url).path == self.path)

    def _route(self, route: Any) -> None:
        if self.holding and self.is_reload(route.request):
            self.held.append(route)
        else:
            route.continue_()

    def release(self) -> None:
        assert self.held, f"no GET {self.path} was held"
        self.holding = False
        for route in self.held:
            route.continue_()
        self.held.clear()


def create_holder(gateway: Served, listing: Listing, label: str) -> dict[str, Any]:
    body = {listing.label_field: label, "budgets": THREE_BUDGETS}
    status, made = call(gateway, "POST", listing.path, ADMIN_KEY, body)
    assert status == 201, made
    return dict(made)


def open_listing(page: Any, gateway: Served, listing: Listing, label: str) -> tuple[Any, Any, HeldReloads]:
    """Signed in on the listing's page: its row for ``label``, that row's Edit button, the reload holder."""
    from playwright.sync_api import expect

    sign_in(page, gateway)
    open_section(page, listing.section)
    row = page.locator(listing.rows, has_text=label)
    expect(row).to_contain_text(say("en", "period.hours", n=5))  # listed with its budgets
    edit = row.get_by_role("button", name=f"{say('en', 'keys.edit')} {label}")
    return row, edit, HeldReloads(page, listing.path)


def open_form(
    page: Any, gateway: Served, listing: Listing, label: str
) -> tuple[dict[str, Any], Any, Any, HeldReloads, Any]:
    """A holder made with three budgets, its list opened and its form opened from its Edit button: the holder,
    its row, the button, the list's reloads (not held yet) and the form's budget rows."""
    from playwright.sync_api import expect

    made = create_holder(gateway, listing, label)
    row, edit, reloads = open_listing(page, gateway, listing, label)
    edit.click()
    budgets = page.locator(f"#{listing.form}-budgets .budget-row")
    expect(budgets).to_have_count(3)
    return made, row, edit, reloads, budgets


def save_with_the_reload_held(page: Any, listing: Listing, reloads: HeldReloads, label: str) -> None:
    """Submit the form; the save is answered, the list's reload that follows is held."""
    from playwright.sync_api import expect

    reloads.holding = True
    with page.expect_request(reloads.is_reload):
        page.click(f"#{listing.form}-submit")
    expect(page.locator("#notice")).to_have_text(say("en", listing.saved, name=label, alias=label))
    assert reloads.held  # the reload's route was handled before the notice's check answered


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
def test_an_edit_clicked_before_the_reload_lands_shows_what_was_saved(
    page: Any, gateway: Served, listing: Listing
) -> None:
    from playwright.sync_api import expect

    label = f"Early {listing.form}"
    made, row, edit, reloads, budgets = open_form(page, gateway, listing, label)
    budgets.nth(1).locator("[name=usd]").fill("25")
    budgets.nth(0).get_by_role("button", name=say("en", "teams.form.removeBudget")).click()
    save_with_the_reload_held(page, listing, reloads, label)

    edit.click()  # the list has not reloaded yet
    expect(budgets).to_have_count(2)  # what was saved, not the three listed before
    expect(budgets.nth(0).locator("[name=usd]")).to_have_value("25")

    # Changed elsewhere meanwhile, so that the held reload brings news and re-renders the row.
    status, _ = call(gateway, "PATCH", f"{listing.path}/{made['id']}", ADMIN_KEY, {"limits": {"rpm": 31}})
    assert status == 200
    reloads.release()
    expect(row).to_contain_text(say("en", "keys.limits.rpm", n=31))
    expect(budgets).to_have_count(2)  # a reload re-renders the list and leaves the open form as it is
    expect(budgets.nth(0).locator("[name=usd]")).to_have_value("25")


@pytest.mark.parametrize("listing", LISTINGS, ids=IDS)
def test_an_edit_pressed_while_the_reload_lands_opens_the_form(page: Any, gateway: Served, listing: Listing) -> None:
    from playwright.sync_api import expect

    label = f"Pressed {listing.form}"
    made, row, edit, reloads, budgets = open_form(page, gateway, listing, label)
    page.fill(f"#{listing.form}-rpm", "30")
    save_with_the_reload_held(page, listing, reloads, label)
    # Changed elsewhere meanwhile, so that the held reload brings news and re-renders the row.
    status, _ = call(gateway, "PATCH", f"{listing.path}/{made['id']}", ADMIN_KEY, {"limits": {"rpm": 31}})
    assert status == 200

    edit.scroll_into_view_if_needed()  # Edit scrolled to the form: the mouse can press only what is in view
    box = edit.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    reloads.release()
    expect(row).to_contain_text(say("en", "keys.limits.rpm", n=31))  # the reload landed under the pressed mouse
    box = edit.bounding_box()  # where the button is now (the row's new text may have moved it)
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.up()

    expect(budgets).to_have_count(3)
    expect(page.locator(f"#{listing.form}-rpm")).to_have_value("31")
