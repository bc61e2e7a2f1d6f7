"""The console's "Sign in with <issuer>" in headless Chromium, through the real issuer's login page, in
English, Vietnamese and Chinese: an admin signs in and out, a person no rule admits is told why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chromium import launched_chromium, new_page
from tests.support.gateway import RunningGateway, gateway_settings, serve_gateway
from tests.support.oidc_issuer import LoopbackIssuer, running_issuer

from .helpers import USERS, oidc_fields

pytestmark = [pytest.mark.browser, pytest.mark.sockets]

BUTTON = {"en": "Sign in with Test issuer", "vi": "Đăng nhập bằng Test issuer", "zh": "使用 Test issuer 登录"}
SIGNED_IN_AS = {"en": "Signed in as {}", "vi": "Đã đăng nhập: {}", "zh": "已登录：{}"}
NOT_ADMITTED = {"en": "does not admit your account", "vi": "không chấp nhận tài khoản", "zh": "未接纳你的账户"}
PROVIDERS = {"en": "Providers", "vi": "Nhà cung cấp", "zh": "提供商"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LoopbackIssuer, RunningGateway]]:
    with running_issuer(USERS) as issuer, serve_gateway(gateway_settings(oidc=oidc_fields(issuer))) as gateway:
        issuer.redirect_uris = [gateway.url + "/auth/oidc/callback"]
        yield issuer, gateway


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    with new_page(chromium) as opened:
        yield opened


def sign_in_with_issuer(page: Any, gateway: RunningGateway, lang: str, user: str) -> None:
    from playwright.sync_api import expect

    page.goto(gateway.url + "/ui/")
    page.wait_for_selector("body[data-ready='true']")
    page.select_option("#lang", lang)
    button = page.locator("#oidc-sign-in-button")
    expect(button).to_have_text(BUTTON[lang])
    button.click()
    page.wait_for_url("**/authorize?**")  # the issuer's own login page
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user][0])
    page.click("button[type=submit]")
    page.wait_for_url(gateway.url + "/ui/**")
    page.wait_for_selector("body[data-ready='true']")


@pytest.mark.parametrize("lang", ["en", "vi", "zh"])
def test_an_admin_signs_in_with_the_issuer_and_out_again(
    page: Any, served: tuple[LoopbackIssuer, RunningGateway], lang: str
) -> None:
    from playwright.sync_api import expect

    _, gateway = served
    sign_in_with_issuer(page, gateway, lang, "ada")
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#providers-title")).to_have_text(PROVIDERS[lang])
    expect(page.locator("#admin-badge")).to_be_visible()  # the session is an admin's: the keys list loads
    expect(page.locator("#signed-in-as")).to_have_text(SIGNED_IN_AS[lang].format("ada@example.edu"))
    # No key is in the page's reach: the session is an HttpOnly cookie.
    assert page.evaluate("sessionStorage.getItem('anygate.key')") is None
    assert "anygate_session" not in page.evaluate("document.cookie")
    # A state-changing call from the console carries the CSRF token: creating a key works.
    page.click("#nav a[data-section=keys]")
    page.fill("#kf-alias", f"made-in-{lang}")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-secret")).to_be_visible()
    expect(page.locator("#keys-list")).to_contain_text(f"made-in-{lang}")

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#oidc-sign-in-button")).to_have_text(BUTTON[lang])
    assert page.evaluate("fetch('/auth/session').then((r) => r.json())") == {"signed_in": False}


@pytest.mark.parametrize("lang", ["en", "vi", "zh"])
def test_a_person_no_rule_admits_is_told_why(
    page: Any, served: tuple[LoopbackIssuer, RunningGateway], lang: str
) -> None:
    from playwright.sync_api import expect

    _, gateway = served
    sign_in_with_issuer(page, gateway, lang, "eve")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text(NOT_ADMITTED[lang])
    assert "signin_error" not in page.url


def test_a_user_signs_in_and_sees_no_admin_sections(page: Any, served: tuple[LoopbackIssuer, RunningGateway]) -> None:
    from playwright.sync_api import expect

    _, gateway = served
    sign_in_with_issuer(page, gateway, "en", "bob")
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#admin-badge")).to_be_hidden()
    expect(page.locator("#nav a[data-section=people]")).to_be_hidden()  # users and teams: an admin's
    expect(page.locator("#nav a[data-section=keys]")).to_be_visible()  # the keys this person made, and only those
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as bob@example.edu")
