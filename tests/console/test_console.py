"""The web console at /ui/, driven in headless Chromium against the real gateway on a loopback port.

Needs Debian's Chromium at /usr/bin/chromium; without it the browser tests skip, unless
ANYGATE_TEST_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from anygate.app import create_app
from anygate.app.gateway import CONSOLE_DIR
from anygate.catalog import PRESETS
from anygate.settings import ProviderConfig, Settings
from tests.support.chromium import launched_chromium
from tests.support.fake_upstream import FakeUpstream
from tests.support.inprocess import InProcessGateway, inprocess_gateway

ADMIN_KEY = "sk-ag-console-test-admin"
CUSTOM_LABELS = {"en": "Custom Provider", "vi": "Nhà cung cấp tùy chỉnh", "zh": "自定义提供商"}
LANGUAGE_NAMES = {"en": "English", "vi": "Tiếng Việt", "zh": "中文"}
SCREENSHOTS = os.environ.get("ANYGATE_CONSOLE_SCREENSHOTS")  # a folder: save a screenshot per language


# ------------------------------------------------------------------------------------- static checks


def catalog(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((CONSOLE_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return loaded


def test_i18n_catalogs_have_identical_keys_and_placeholders() -> None:
    english = catalog("en")
    for lang in ("vi", "zh"):
        translated = catalog(lang)
        assert set(translated) == set(english), f"{lang}.json keys differ from en.json"
        for key, text in english.items():
            assert translated[key].strip(), f"{lang}.json: {key} is empty"
            placeholders = set(re.findall(r"\{(\w+)\}", text))
            assert set(re.findall(r"\{(\w+)\}", translated[key])) == placeholders, f"{lang}.json: {key}"
        assert translated["providers.type.custom"] == CUSTOM_LABELS[lang]


def test_every_i18n_key_used_by_the_console_exists() -> None:
    sources = [p.read_text(encoding="utf-8") for p in CONSOLE_DIR.glob("*.js")]
    sources.append((CONSOLE_DIR / "index.html").read_text(encoding="utf-8"))
    used = set()
    for text in sources:
        used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([\w.]+)"', text))
        used |= set(re.findall(r'\bt\("([\w.]+)"', text))
    assert used, "no translated text found"
    assert used <= set(catalog("en")), f"missing keys: {sorted(used - set(catalog('en')))}"


def test_console_presets_match_the_catalog() -> None:
    presets = json.loads((CONSOLE_DIR / "presets.json").read_text(encoding="utf-8"))
    assert [p["id"] for p in presets] == list(PRESETS)
    for preset in presets:
        known = PRESETS[preset["id"]]
        assert preset["base_url"] == known.base_url
        assert preset["name"] == known.name
        assert preset["auth"] == ("none" if known.keyless else known.auth)


# Ways a script turns text into markup: the console builds every element itself and sets text as text.
MARKUP_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|createContextualFragment"
)


def test_console_never_parses_text_as_markup() -> None:
    for source in sorted(CONSOLE_DIR.glob("*.js")):
        found = MARKUP_SINKS.findall(source.read_text(encoding="utf-8"))
        assert not found, f"{source.name}: {found}"


def test_console_page_has_no_inline_script_style_or_handler() -> None:
    """What the Content-Security-Policy (script-src 'self'; style-src 'self') would refuse anyway."""
    page = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline script"
    assert "<style" not in page and not re.search(r"\sstyle=", page), "an inline style"
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"
    for source in CONSOLE_DIR.glob("*.js"):
        assert not re.search(r"setAttribute\(\s*[\"']style", source.read_text(encoding="utf-8")), source.name


def test_every_error_code_the_console_translates_is_one_anygate_answers() -> None:
    """``apiError.<code>`` strings name codes the gateway has (a renamed code would show untranslated)."""
    codes = {key.removeprefix("apiError.") for key in catalog("en") if key.startswith("apiError.")}
    source = "\n".join(p.read_text(encoding="utf-8") for p in (CONSOLE_DIR.parent).rglob("*.py"))
    answered = set(re.findall(r'code\s*=\s*"([a-z_]+)"', source))
    assert codes <= answered, sorted(codes - answered)


# ------------------------------------------------------------------------------------ live gateway


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(method: str, url: str, headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request with the standard library; redirects are returned, not followed."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class Served:
    """The gateway on a loopback port, with one custom provider in front of a fake upstream."""

    def __init__(self, upstream: FakeUpstream, data_dir: Path) -> None:
        provider = ProviderConfig(
            id="campus",
            type="custom",
            name="Campus LLM",
            base_url=upstream.base_url,
            api_key=SecretStr("sk-upstream"),
            allow_private_network=True,
        )
        settings = Settings(admin_key=SecretStr(ADMIN_KEY), data_dir=data_dir, providers=[provider])
        self.upstream = upstream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="warning", ws="none", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def admin(self, method: str, path: str) -> Answer:
        return fetch(method, self.url + path, {"Authorization": f"Bearer {ADMIN_KEY}"})


class InProcess:
    """The same gateway in-process, its upstream in memory: for what needs no socket (headers, redirects)."""

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway

    def fetch(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        with self.gateway.client(None) as http:
            response = http.request(method, path, headers=headers or {}, content=body)
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    def admin(self, method: str, path: str) -> Answer:
        return self.fetch(method, path, {"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    upstream = FakeUpstream(models=["fake-model", "fake-embed"]).in_memory()
    provider = ProviderConfig(
        id="campus",
        type="custom",
        name="Campus LLM",
        base_url=upstream.base_url,
        api_key=SecretStr("sk-upstream"),
        allow_private_network=True,
    )
    data_dir = tmp_path_factory.mktemp("console-data")
    settings = Settings(admin_key=SecretStr(ADMIN_KEY), data_dir=data_dir, providers=[provider])
    with inprocess_gateway(settings, upstream) as gateway:
        yield InProcess(gateway)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with FakeUpstream.start_in_thread(models=["fake-model", "fake-embed"]) as upstream:
        served = Served(upstream, tmp_path_factory.mktemp("console-data"))
        served.start()
        try:
            yield served
        finally:
            served.stop()


def test_console_is_served_without_a_key(console: InProcess) -> None:
    redirect = console.fetch("GET", "/ui")
    assert redirect.status in (301, 302, 307, 308)
    assert redirect.headers["location"].endswith("/ui/")
    page = console.fetch("GET", "/ui/")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    script = console.fetch("GET", "/ui/app.js")
    assert script.status == 200
    assert "javascript" in script.headers["content-type"]
    assert console.fetch("GET", "/ui/i18n/zh.json").json()["providers.type.custom"] == "自定义提供商"
    missing = console.fetch("GET", "/ui/nope.js")
    assert missing.status == 404
    assert "error" in missing.json()


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@pytest.mark.parametrize("path", ["/ui/", "/ui/app.js", "/ui/style.css", "/ui/i18n/en.json", "/ui/nope.js"])
def test_console_is_served_with_security_headers(console: InProcess, path: str) -> None:
    answer = console.fetch("GET", path)
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_management_and_model_responses_are_not_sniffed_or_framed(console: InProcess) -> None:
    listed = console.admin("GET", "/v1/providers")
    assert listed.headers["x-content-type-options"] == "nosniff" and listed.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in listed.headers  # the console's alone (/docs loads its own assets)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    body = json.dumps({"model": "campus/fake-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for model_path in ("/v1/chat/completions", "/v1/embeddings"):
        answer = console.fetch("POST", model_path, auth, body)
        assert answer.status == 200 and answer.headers["x-content-type-options"] == "nosniff"
    refused = console.fetch("POST", "/v1/chat/completions")  # no key: the edge's own error
    assert refused.status == 401 and refused.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("path", "location"), [("/ui", "/ui/"), ("/ui?lang=zh", "/ui/?lang=zh")])
def test_console_redirects_never_name_the_host_a_request_claims(console: InProcess, path: str, location: str) -> None:
    for host in ("evil.example", "evil.example:8080"):
        answer = console.fetch("GET", path, {"Host": host})
        assert answer.status in (301, 302, 307, 308)
        assert answer.headers["location"] == location


def test_api_redirects_never_name_the_host_a_request_claims(console: InProcess) -> None:
    answer = console.fetch("GET", "/v1/providers/", {"Host": "evil.example", "Authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status in (301, 302, 307, 308)
    assert answer.headers["location"] == "/v1/providers"


# ------------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(5000)
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


@pytest.mark.browser
def test_console_signs_in_and_lists_the_configured_provider(page: Any, gateway: Served) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway)
    providers = page.locator("#providers-list")
    expect(providers).to_contain_text("Campus LLM")
    expect(providers).to_contain_text("campus")
    expect(providers).to_contain_text(gateway.upstream.base_url)
    expect(providers).to_contain_text("Custom Provider")
    expect(providers).to_contain_text("Read-only")
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#nav")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('anygate.key')") == ADMIN_KEY

    page.click("#nav a[data-section=models]")
    expect(page.locator("#models-list")).to_contain_text("campus/fake-model")

    page.reload()  # the key survives a reload of the tab
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('anygate.key')") is None


@pytest.mark.browser
def test_console_switches_language(page: Any, gateway: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    headings = {"en": "Providers", "vi": "Nhà cung cấp", "zh": "提供商"}
    for lang in ("vi", "zh", "en"):
        page.select_option("#lang", lang)
        expect(page.locator("#pf-type option[value=custom]")).to_have_text(CUSTOM_LABELS[lang])
        expect(page.locator("#providers-title")).to_have_text(headings[lang])
        expect(page.locator("#providers-list")).to_contain_text(CUSTOM_LABELS[lang])
        assert page.evaluate("localStorage.getItem('anygate.lang')") == lang
        assert page.evaluate("document.documentElement.lang").startswith(lang)
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{lang}.png"), full_page=True)
    page.select_option("#lang", "zh")
    expect(page.locator("#providers-title")).to_have_text("提供商")
    page.reload()  # the choice is remembered
    expect(page.locator("#providers-title")).to_have_text("提供商")


@pytest.mark.browser
def test_console_language_defaults_to_the_browser_language(browser: Any, gateway: Served) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="vi-VN")
    try:
        opened = context.new_page()
        opened.goto(gateway.url + "/ui/")
        expect(opened.locator("#sign-in-title")).to_have_text("Đăng nhập")
        expect(opened.locator("#lang")).to_have_value("vi")
    finally:
        context.close()


@pytest.mark.browser
def test_console_shows_api_errors(page: Any, gateway: Served) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway, key="sk-ag-wrong")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_have_text("Missing or invalid API key")
    expect(page.locator("#sign-in")).to_be_visible()

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    expect(page.locator("#error")).to_be_hidden()
    # The id is taken by the provider from the environment: whatever the API says, it is shown.
    page.fill("#pf-id", "campus")
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.click("#pf-submit")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).not_to_be_empty()


@pytest.mark.browser
def test_console_checks_headers_json_before_sending(page: Any, gateway: Served) -> None:
    from playwright.sync_api import expect

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.method) if request.url.endswith("/v1/providers") else None)
    page.fill("#pf-id", "lab")
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.fill("#pf-headers", "[1, 2]")
    page.click("#pf-submit")
    expect(page.locator("#error-text")).to_contain_text("JSON object")
    assert "POST" not in sent


@pytest.mark.browser
def test_console_degrades_when_routes_are_missing_or_forbidden(page: Any, gateway: Served) -> None:
    """Keys, quota and own-key routes answering 404 or 403 show a translated note, not an error."""
    from playwright.sync_api import expect

    not_found = {"error": {"message": "Route not implemented", "type": "not_found_error", "param": None, "code": None}}
    forbidden = {"error": {"message": "admin only", "type": "permission_error", "param": None, "code": None}}
    page.route("**/v1/keys", lambda route: route.fulfill(status=403, json=forbidden))
    page.route("**/v1/quota", lambda route: route.fulfill(status=404, json=not_found))
    page.route("**/auth/creds", lambda route: route.fulfill(status=404, json=not_found))
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    expect(page.locator("#nav a[data-section=keys]")).to_be_hidden()
    expect(page.locator("#provider-form")).to_be_hidden()  # not an admin: no add form, no actions
    expect(page.locator("#health-check")).to_be_hidden()
    page.click("#nav a[data-section=quota]")
    expect(page.locator("#quota .unavailable")).to_have_text("This section is not available on this gateway yet.")
    page.select_option("#lang", "zh")
    expect(page.locator("#quota .unavailable")).to_have_text("此网关暂不提供该功能。")
    expect(page.locator("#error")).to_be_hidden()


@pytest.mark.browser
def test_console_shows_quota_and_masked_provider_keys(page: Any, gateway: Served) -> None:
    """Rendering of the neutral quota shape and of /auth/creds (answered here by the browser)."""
    from playwright.sync_api import expect

    quota = {
        "key": "course-comp318",
        "tokens": {"limit": 5000000, "used": 250000, "remaining": 4750000, "resets_at": "2026-12-01T00:00:00Z"},
        "cost": {"currency": "USD", "limit": 5.0, "used": 0.42, "remaining": 4.58},
    }
    creds: dict[str, Any] = {"providers": {"campus": {"apiKey": "sk-ant-a...mnop"}}}
    puts: list[Any] = []

    def answer_creds(route: Any) -> None:
        if route.request.method == "PUT":
            puts.append(route.request.post_data_json)
            route.fulfill(status=200, json={"providers": {}})
        else:
            route.fulfill(status=200, json=creds)

    page.route("**/v1/quota", lambda route: route.fulfill(status=200, json=quota))
    page.route("**/auth/creds", answer_creds)
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")

    page.click("#nav a[data-section=quota]")
    view = page.locator("#quota-view")
    expect(view).to_contain_text("4,750,000 remaining")
    expect(view).to_contain_text("$4.58 remaining")
    expect(view).to_contain_text("$0.42 of $5.00 used")
    expect(page.locator("#quota [role=progressbar]").first).to_have_attribute("aria-valuenow", "95")

    page.click("#nav a[data-section=creds]")
    expect(page.locator("#creds-list")).to_contain_text("sk-ant-a...mnop")
    page.get_by_role("button", name="Remove").click()
    expect(page.locator("#notice")).to_contain_text("Key for Campus LLM removed.")
    assert puts == [{"providers": {"campus": None}}]


@pytest.mark.browser
def test_console_edits_only_what_changed_and_shows_test_results(page: Any, gateway: Served) -> None:
    """Edit sends a merging PUT without the key when its field is left empty (routes answered here)."""
    from playwright.sync_api import expect

    stored = {
        "id": "lab",
        "name": "Lab",
        "type": "vllm",
        "base_url": "http://10.0.0.5:8000/v1",
        "configured": True,
        "healthy": None,
        "models": ["m1"],
        "origin": "store",
        "capabilities": {"models": True, "chat": True, "streaming": False, "embeddings": True, "checked_at": 1},
    }
    detail = {**stored, "api_key": "***", "headers": {"X-Tenant": "cs"}, "allow_private_network": True}
    puts: list[Any] = []

    def answer_provider(route: Any) -> None:
        if route.request.method == "PUT":
            puts.append(route.request.post_data_json)
            route.fulfill(status=200, json={**detail, **route.request.post_data_json, "api_key": "***"})
        else:
            route.fulfill(status=200, json=detail)

    capabilities = {"id": "lab", "capabilities": {"chat": True, "streaming": True, "stream_usage": False}}
    page.route("**/v1/providers", lambda route: route.fulfill(status=200, json={"object": "list", "data": [stored]}))
    page.route("**/v1/providers/lab", answer_provider)
    page.route("**/v1/providers/lab/test", lambda route: route.fulfill(status=200, json=capabilities))
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("vLLM")
    # what its last live test found, in words: the list says it cannot stream
    expect(page.locator("#providers-list")).to_contain_text("Streaming: no")
    expect(page.locator("#providers-list")).to_contain_text("Embeddings: yes")

    page.get_by_role("button", name="Test Lab").click()
    expect(page.locator("#provider-test")).to_contain_text("Usage on streams")  # in words, not field names
    expect(page.locator("#provider-test")).not_to_contain_text("stream_usage")
    expect(page.locator("#provider-test dd").first).to_have_text("Yes")

    page.get_by_role("button", name="Edit Lab").click()
    expect(page.locator("#pf-name")).to_be_focused()  # the form is filled; typing now cannot race it
    expect(page.locator("#provider-form-title")).to_have_text("Edit provider lab")
    expect(page.locator("#pf-headers")).to_have_value('{"X-Tenant":"cs"}')
    expect(page.locator("#pf-api-key-hint")).to_be_visible()
    page.fill("#pf-name", "Lab 2")
    page.click("#pf-submit")
    expect(page.locator("#notice")).to_contain_text("Provider lab saved.")
    assert puts == [{"name": "Lab 2"}]


@pytest.mark.browser
def test_console_asks_for_the_key_again_when_the_url_moves_to_another_host(page: Any, gateway: Served) -> None:
    """A stored key never follows a provider to another scheme, host or port (the API answers 400
    ``api_key_required``): the form asks for it before sending, and a path change alone does not."""
    from playwright.sync_api import expect

    stored = {"id": "lab", "name": "Lab", "type": "custom", "base_url": "http://10.0.0.5:8000/v1", "origin": "store"}
    detail = {**stored, "api_key": "***", "headers": {}, "models": [], "allow_private_network": True}
    puts: list[Any] = []

    def answer_provider(route: Any) -> None:
        if route.request.method == "PUT":
            puts.append(route.request.post_data_json)
            route.fulfill(status=200, json={**detail, **route.request.post_data_json, "api_key": "***"})
        else:
            route.fulfill(status=200, json=detail)

    page.route("**/v1/providers", lambda route: route.fulfill(status=200, json={"object": "list", "data": [stored]}))
    page.route("**/v1/providers/lab", answer_provider)
    sign_in(page, gateway)
    page.get_by_role("button", name="Edit Lab").click()
    expect(page.locator("#pf-name")).to_be_focused()  # the form is filled; typing now cannot race it
    expect(page.locator("#pf-api-key-moved")).to_be_hidden()
    page.fill("#pf-base-url", "http://10.0.0.5:8000/v2")  # the same host: the stored key stays
    expect(page.locator("#pf-api-key-moved")).to_be_hidden()
    page.fill("#pf-base-url", "https://elsewhere.example/v1")
    expect(page.locator("#pf-api-key-moved")).to_be_visible()
    expect(page.locator("#pf-api-key-hint")).to_be_hidden()
    page.click("#pf-submit")
    assert page.evaluate("document.activeElement.id") == "pf-api-key"
    assert puts == []  # not sent without the key
    page.fill("#pf-api-key", "sk-new-host-key")
    page.click("#pf-submit")
    expect(page.locator("#notice")).to_contain_text("Provider lab saved.")
    assert puts == [{"base_url": "https://elsewhere.example/v1", "api_key": "sk-new-host-key"}]


@pytest.mark.browser
def test_console_shows_a_refused_move_and_points_at_the_secret(page: Any, gateway: Served) -> None:
    from playwright.sync_api import expect

    stored = {"id": "lab", "name": "Lab", "type": "custom", "base_url": "http://10.0.0.5:8000/v1", "origin": "store"}
    detail = {**stored, "api_key": None, "headers": {"X-Api-Key": "***"}, "models": [], "allow_private_network": True}
    refusal = {
        "message": "headers.X-Api-Key: the change moves provider 'lab' to another host (https://elsewhere.example:443)",
        "type": "invalid_request_error",
        "param": "headers.X-Api-Key",
        "code": "api_key_required",
    }

    def answer_provider(route: Any) -> None:
        if route.request.method == "PUT":
            route.fulfill(status=400, json={"error": refusal})
        else:
            route.fulfill(status=200, json=detail)

    page.route("**/v1/providers", lambda route: route.fulfill(status=200, json={"object": "list", "data": [stored]}))
    page.route("**/v1/providers/lab", answer_provider)
    sign_in(page, gateway)
    page.get_by_role("button", name="Edit Lab").click()
    expect(page.locator("#pf-name")).to_be_focused()  # the form is filled; typing now cannot race it
    page.fill("#pf-base-url", "https://elsewhere.example/v1")
    expect(page.locator("#pf-api-key-moved")).to_be_hidden()  # no stored key to ask for
    page.click("#pf-submit")
    expect(page.locator("#error")).to_contain_text("moves provider 'lab' to another host")
    assert page.evaluate("document.activeElement.id") == "pf-headers"


@pytest.mark.browser
def test_console_works_under_its_content_security_policy(page: Any, gateway: Served) -> None:
    """Every section renders with the strict policy on: no inline script, style or handler is refused."""
    from playwright.sync_api import expect

    page.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    quota = {"key": "k", "tokens": {"limit": 100, "used": 25, "remaining": 75, "resets_at": None}, "cost": None}
    page.route("**/v1/quota", lambda route: route.fulfill(status=200, json=quota))
    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    for section, shown in (
        ("models", "#models-list"),
        ("usage", "#usage-time-view svg.chart >> nth=0"),
        ("requests", "#requests"),
        ("people", "#users-list"),
        ("keys", "#keys"),
        ("quota", "#quota-view"),
        ("creds", "#creds"),
    ):
        page.click(f"#nav a[data-section={section}]")
        expect(page.locator(shown)).to_be_visible()
    fill = page.locator("#quota .bar > span").first
    assert page.evaluate("(el) => el.style.width", fill.element_handle()) == "75%"
    assert page.evaluate("window.cspViolations") == []
    assert not [m for m in messages if "Content Security Policy" in m]


@pytest.mark.browser
def test_console_sets_the_api_a_provider_speaks(page: Any, gateway: Served) -> None:
    """The Anthropic preset speaks the Messages API; a custom provider may say it does too."""
    from playwright.sync_api import expect

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    page.select_option("#pf-type", "anthropic")
    expect(page.locator("#pf-api")).to_have_value("anthropic")
    page.select_option("#pf-type", "custom")
    expect(page.locator("#pf-api")).to_have_value("openai")
    page.fill("#pf-id", "claude-proxy")
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.select_option("#pf-api", "anthropic")
    page.check("#pf-private")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/providers")) as sent:
        page.click("#pf-submit")
    assert sent.value.post_data_json["api"] == "anthropic"
    expect(page.locator("#notice")).to_contain_text("Provider claude-proxy saved.")
    stored = gateway.admin("GET", "/v1/providers/claude-proxy")
    assert stored.status == 200, stored.text
    assert stored.json()["api"] == "anthropic"
    gateway.admin("DELETE", "/v1/providers/claude-proxy")


@pytest.mark.browser
def test_console_creates_custom_provider(page: Any, gateway: Served) -> None:
    """Needs the provider CRUD routes (POST /v1/providers, GET /v1/providers/{id})."""
    from playwright.sync_api import expect

    sign_in(page, gateway)
    expect(page.locator("#providers-list")).to_contain_text("Campus LLM")
    expect(page.locator("#pf-type")).to_have_value("custom")
    page.select_option("#pf-type", "custom")
    page.fill("#pf-id", "lab")
    page.fill("#pf-name", "Lab Gateway")
    page.fill("#pf-base-url", gateway.upstream.base_url)
    page.fill("#pf-api-key", "sk-lab-secret")
    page.fill("#pf-headers", '{"X-Tenant": "cs"}')
    page.fill("#pf-models", "fake-model, fake-embed")
    page.check("#pf-private")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/providers")) as sent:
        page.click("#pf-submit")
    assert sent.value.post_data_json == {
        "id": "lab",
        "type": "custom",
        "name": "Lab Gateway",
        "base_url": gateway.upstream.base_url,
        "api_key": "sk-lab-secret",
        "headers": {"X-Tenant": "cs"},
        "models": ["fake-model", "fake-embed"],
        "allow_private_network": True,
    }
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("Provider lab saved.")
    expect(page.locator("#providers-list")).to_contain_text("Lab Gateway")

    stored = gateway.admin("GET", "/v1/providers/lab")
    assert stored.status == 200, stored.text
    body = stored.json()
    assert body["type"] == "custom"
    assert body["name"] == "Lab Gateway"
    assert body["base_url"] == gateway.upstream.base_url
    assert body["api_key"] == "***"
    assert "X-Tenant" in body["headers"]
    assert body["models"] == ["fake-model", "fake-embed"]
    assert body["allow_private_network"] is True
    gateway.admin("DELETE", "/v1/providers/lab")
