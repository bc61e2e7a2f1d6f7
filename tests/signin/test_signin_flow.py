"""Console sign-in through a real OpenID Connect issuer on loopback (Authlib's authorization server):
the code flow with PKCE end to end, what a signed-in admin and user may do, CSRF, and the refusals."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.gateway import ADMIN_KEY
from tests.support.oidc_issuer import running_issuer

from .helpers import USERS, browser, gateway_with, oidc_settings, open_login, session_of, sign_in, submit_login

pytestmark = pytest.mark.sockets


def test_an_admin_signs_in_with_the_code_flow_and_pkce(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anygate")
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        landed = sign_in(web, issuer, "ada")
        assert landed.status_code == 200 and landed.url.path == "/ui/"
        session = session_of(web)
        assert session["signed_in"] is True and session["role"] == "admin" and session["name"] == "ada@example.edu"
        # PKCE: the token request carried the verifier, and the issuer (which requires it) accepted it.
        (token_request,) = issuer.token_requests
        assert len(token_request["code_verifier"]) >= 43 and "client_secret" not in token_request
        # The session is the admin's, and the admin key is nowhere the browser can see.
        assert web.get("/v1/keys").status_code == 200
        cookies = "; ".join(f"{c.name}={c.value}" for c in web.cookies.jar)
        assert ADMIN_KEY not in cookies and ADMIN_KEY not in str(session)
        made = web.post("/v1/users", json={"name": "course"}, headers={"x-csrf-token": session["csrf_token"]})
        assert made.status_code == 201
    # Nothing secret reached anygate's logs: the client secret, the code, the verifier, the session.
    logged = "\n".join(
        r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records if r.name.startswith("anygate")
    )
    assert "console sign-in" in logged
    for secret in (issuer.client_secret, token_request["code"], token_request["code_verifier"], session["csrf_token"]):
        assert secret not in logged


def test_the_session_cookie_is_http_only_lax_and_expiring() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        page = open_login(web, issuer)
        to_callback = submit_login(web, issuer, page, "ada", follow=False)
        back = web.get(to_callback.headers["location"])
        assert back.status_code == 303
        (session_cookie,) = [v for v in back.headers.get_list("set-cookie") if v.startswith("anygate_session=")]
        assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Max-Age=28800" in session_cookie
        assert "Secure" not in session_cookie  # plain http here; https requests get Secure


def test_state_changing_calls_need_the_csrf_token_and_this_origin() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "ada")
        token = session_of(web)["csrf_token"]
        missing = web.post("/v1/users", json={"name": "x"})
        assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed"
        wrong = web.post("/v1/users", json={"name": "x"}, headers={"x-csrf-token": token[:-2] + "xx"})
        assert wrong.status_code == 403
        other_site = {"x-csrf-token": token, "origin": "https://evil.example"}
        assert web.post("/v1/users", json={"name": "x"}, headers=other_site).status_code == 403
        cross = {"x-csrf-token": token, "sec-fetch-site": "cross-site"}
        assert web.post("/v1/users", json={"name": "x"}, headers=cross).status_code == 403
        assert web.post("/auth/session/logout").status_code == 403  # logging out changes state too
        same_site = {"x-csrf-token": token, "origin": "http://anygate.test"}
        assert web.post("/v1/users", json={"name": "x"}, headers=same_site).status_code == 201
        with gw.client() as admin:  # the user record exists: the CSRF-refused calls made nothing
            assert [u["name"] for u in admin.get("/v1/users").json()["data"]] == ["x"]


def test_a_user_gets_a_record_of_their_own_and_only_its_rights() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "bob")
        session = session_of(web)
        assert session["role"] == "user" and session["name"] == "bob@example.edu"
        user_id = session["user_id"]
        with gw.client() as admin:
            user = admin.get(f"/v1/users/{user_id}").json()
            assert user["name"] == "bob@example.edu"
        assert web.get("/v1/keys").json()["data"] == []  # nobody else's keys
        made = web.post("/v1/keys", json={"alias": "laptop"}, headers={"x-csrf-token": session["csrf_token"]})
        assert made.status_code == 201 and made.json()["user_id"] == user_id
        mine = web.get("/v1/keys").json()
        assert [k["id"] for k in mine["data"]] == [made.json()["id"]] and mine["caller"]["role"] == "user"
        assert web.get(f"/v1/keys/{made.json()['id']}").status_code == 200
        # Model traffic needs a key: the console session does not call models.
        chat = web.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=session_headers(session))
        assert chat.status_code == 401
        # Signing in again is the same person: the same user record.
        web.cookies.clear()
        sign_in(web, issuer, "bob")
        assert session_of(web)["user_id"] == user_id


def session_headers(session: dict[str, str]) -> dict[str, str]:
    return {"x-csrf-token": session["csrf_token"]}


def test_people_of_one_team_share_its_user_record() -> None:
    settings = oidc_settings_with_team()
    with running_issuer(USERS) as issuer, gateway_with(settings(issuer)) as gw:
        ids = []
        for person in ("cy", "di"):
            with browser(gw, issuer) as web:
                sign_in(web, issuer, person)
                ids.append(session_of(web)["user_id"])
        assert ids[0] == ids[1]
        with gw.client() as admin:
            assert admin.get(f"/v1/users/{ids[0]}").json()["name"] == "physics"
            with browser(gw, issuer) as web:  # a student without the claim: a record of their own
                sign_in(web, issuer, "bob")
                assert session_of(web)["user_id"] not in ids


def oidc_settings_with_team():  # type: ignore[no-untyped-def]
    def make(issuer):  # type: ignore[no-untyped-def]
        return oidc_settings(issuer, team_claim="department", new_user_budget={"usd": 5.0, "period": "monthly"})

    return make


def test_new_records_start_with_the_configured_budget() -> None:
    with running_issuer(USERS) as issuer:
        settings = oidc_settings(issuer, new_user_budget={"usd": 5.0, "period": "monthly"})
        with gateway_with(settings) as gw, browser(gw, issuer) as web, gw.client() as admin:
            sign_in(web, issuer, "bob")
            user = admin.get(f"/v1/users/{session_of(web)['user_id']}").json()
            assert user["budget"]["usd"] == 5.0 and user["budget"]["period"] == "monthly"


def test_someone_no_rule_admits_is_refused() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        landed = sign_in(web, issuer, "eve")
        assert landed.url.path == "/ui/" and parse_qs(landed.url.query.decode())["signin_error"] == ["not_allowed"]
        assert session_of(web) == {"signed_in": False}
        with gw.client() as admin:
            assert admin.get("/v1/users").json()["data"] == []


@pytest.mark.parametrize(
    ("misbehaviour", "reason"),
    [
        ({"nonce": "not-the-one-sent"}, "nonce"),
        ({"aud": ["someone-else"]}, "audience"),
        ({"iss": "http://127.0.0.1:1/elsewhere"}, "issuer"),
        ({"exp": 1_000_000_000, "iat": 999_990_000}, "expired"),
        ({}, "signature"),
    ],
)
def test_an_id_token_that_fails_a_check_gives_no_session(misbehaviour: dict[str, object], reason: str) -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        issuer.tamper = misbehaviour
        issuer.sign_with_other_key = reason == "signature"
        landed = sign_in(web, issuer, "ada")
        assert parse_qs(landed.url.query.decode())["signin_error"] == [reason]
        assert session_of(web) == {"signed_in": False}
        assert web.get("/v1/keys").status_code == 401


def test_a_callback_is_used_once() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        page = open_login(web, issuer)
        flow_cookie = web.cookies.get("anygate_signin")
        callback = submit_login(web, issuer, page, "ada", follow=False).headers["location"]
        assert web.get(callback).headers["location"] == "/ui/"
        # The same callback again, with the same flow cookie (say, copied): the state is used.
        with browser(gw, issuer) as replay:
            replay.cookies.set("anygate_signin", flow_cookie, domain="anygate.test", path="/auth/oidc/callback")
            again = replay.get(callback)
            assert again.headers["location"] == "/ui/?signin_error=replayed"
            assert "anygate_session=" not in again.headers.get("set-cookie", "")


def test_a_code_comes_back_once_whatever_the_state() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        page = open_login(web, issuer)
        callback = submit_login(web, issuer, page, "ada", follow=False).headers["location"]
        code = parse_qs(urlsplit(callback).query)["code"][0]
        web.get(callback)
        # A new sign-in in this browser, answered with the old code: refused before the issuer is asked.
        open_login(web, issuer)
        state = parse_qs(urlsplit(str(open_login(web, issuer).url)).query)["state"][0]
        answer = web.get("/auth/oidc/callback", params={"code": code, "state": state})
        assert answer.headers["location"] == "/ui/?signin_error=replayed"
        assert len(issuer.token_requests) == 1


def test_a_callback_from_another_browsers_sign_in_is_refused() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw:
        with browser(gw, issuer) as attacker, browser(gw, issuer) as victim:
            page = open_login(attacker, issuer)
            callback = submit_login(attacker, issuer, page, "eve", follow=False).headers["location"]
            open_login(victim, issuer)  # the victim has a sign-in of its own under way
            answer = victim.get(callback)
            assert answer.headers["location"] == "/ui/?signin_error=state"
            with browser(gw, issuer) as fresh:  # and a browser with no sign-in under way at all
                assert fresh.get(callback).headers["location"] == "/ui/?signin_error=flow"


def test_return_to_stays_in_the_console() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw:
        for asked, landed in [
            ("/ui/#keys", "/ui/#keys"),
            ("/ui/usage", "/ui/usage"),
            ("https://evil.example/ui/", "/ui/"),
            ("//evil.example/ui", "/ui/"),
            ("/ui\\@evil.example", "/ui/"),
        ]:
            with browser(gw, issuer) as web:
                page = open_login(web, issuer, return_to=asked)
                callback = submit_login(web, issuer, page, "ada", follow=False).headers["location"]
                assert web.get(callback).headers["location"] == landed


def test_a_tampered_forged_or_expired_cookie_is_no_session() -> None:
    import time

    from anygate.signin.service import Session

    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "ada")
        good = web.cookies.get("anygate_session")
        assert good is not None
        flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
        signin = gw.app.state.signin
        assert signin is not None
        expired = signin.seal(Session(None, "ada", "t", time.time() - 1))
        flow_as_session = signin._flows.seal({"u": None, "n": "x", "c": "t", "exp": time.time() + 60})
        for value in (flipped, expired, flow_as_session, "k1.bm90IGEgc2Vzc2lvbg", ""):
            with browser(gw, issuer) as other:
                other.cookies.set("anygate_session", value, domain="anygate.test")
                assert session_of(other) == {"signed_in": False}
                assert other.get("/v1/keys").status_code == 401


def test_a_deleted_users_session_ends() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "bob")
        user_id = session_of(web)["user_id"]
        assert web.get("/v1/quota").status_code == 200
        with gw.client() as admin:
            assert admin.delete(f"/v1/users/{user_id}").status_code == 200
        assert session_of(web) == {"signed_in": False}
        assert web.get("/v1/quota").status_code == 401


def test_logout_clears_the_session_and_a_pasted_key_still_works() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "bob")
        token = session_of(web)["csrf_token"]
        out = web.post("/auth/session/logout", headers={"x-csrf-token": token})
        assert out.status_code == 200 and "anygate_session=;" in out.headers["set-cookie"]
        assert session_of(web) == {"signed_in": False}
        # A key in the headers works as ever, and wins over a cookie.
        sign_in(web, issuer, "bob")
        keyed = web.get("/v1/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert keyed.status_code == 200


def test_sign_in_is_described_and_off_without_settings() -> None:
    from tests.support.gateway import gateway_settings

    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, gw.client(key=None) as anon:
        info = anon.get("/auth/oidc").json()
        assert info == {
            "enabled": True,
            "issuer": issuer.url,
            "display_name": "Test issuer",
            "login_url": "/auth/oidc/login",
        }
    with gateway_with(gateway_settings()) as gw, gw.client(key=None) as anon:
        assert anon.get("/auth/oidc").json()["enabled"] is False
        off = anon.get("/auth/oidc/login")
        assert off.status_code == 404 and off.json()["error"]["code"] == "signin_off"


def test_an_issuer_on_loopback_needs_allow_private_network() -> None:
    with running_issuer(USERS) as issuer:
        settings = oidc_settings(issuer, allow_private_network=False)
        with gateway_with(settings) as gw, gw.client(key=None) as anon:
            refused = anon.get("/auth/oidc/login")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "signin_unavailable"
            assert issuer.client_secret not in refused.text


def test_a_rotated_signing_key_is_fetched_again() -> None:
    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw, browser(gw, issuer) as web:
        sign_in(web, issuer, "ada")  # the issuer's keys are cached now
        issuer.rotate_key()
        web.cookies.clear()
        landed = sign_in(web, issuer, "ada")
        assert landed.url.path == "/ui/" and not landed.url.query
        assert session_of(web)["role"] == "admin"


def test_over_https_the_cookies_are_secure() -> None:
    import httpx2

    with running_issuer(USERS) as issuer, gateway_with(oidc_settings(issuer)) as gw:
        issuer.redirect_uris = ["https://anygate.test/auth/oidc/callback"]
        mounts = {"https://anygate.test": gw.transport(), issuer.url: httpx2.HTTPTransport()}
        with httpx2.Client(base_url="https://anygate.test", mounts=mounts, timeout=30) as web:
            started = web.get("/auth/oidc/login")
            assert "Secure" in started.headers["set-cookie"]
            assert "redirect_uri=https%3A%2F%2Fanygate.test%2Fauth%2Foidc%2Fcallback" in started.headers["location"]
            page = web.get(started.headers["location"])
            callback = submit_login(web, issuer, page, "ada", follow=False).headers["location"]
            back = web.get(callback)
            cookies = back.headers.get_list("set-cookie")
            assert back.status_code == 303 and all("; Secure" in c for c in cookies)


def test_behind_a_proxy_ending_tls_a_configured_https_callback_makes_the_cookies_secure() -> None:
    with running_issuer(USERS) as issuer:
        settings = oidc_settings(issuer, redirect_url="https://gateway.example.edu/auth/oidc/callback")
        with gateway_with(settings) as gw, gw.client(key=None) as web:
            started = web.get("/auth/oidc/login")
            assert started.status_code == 302 and started.headers["set-cookie"].endswith("; Secure")
            assert (
                "redirect_uri=https%3A%2F%2Fgateway.example.edu%2Fauth%2Foidc%2Fcallback" in started.headers["location"]
            )
