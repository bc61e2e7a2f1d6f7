"""Console sign-in with OpenID Connect (``signin/``), and the console session it gives.

GET  /auth/oidc             whether sign-in is on, and the issuer's name for the button
GET  /auth/oidc/login       to the issuer (302), with a state, a nonce and a PKCE challenge; ``return_to`` is
                            a console path to come back to (anything else: ``/ui/``)
GET  /auth/oidc/callback    back from the issuer: the session cookie is set and the browser returns (303); a
                            refusal returns to ``/ui/?signin_error=<reason>`` with no session
GET  /auth/session          who the session cookie is (and its CSRF token, for the console's own requests)
POST /auth/session/logout   the session cookie is cleared (a state-changing call: the CSRF token is needed)
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from anygate.api.deps import StateDep
from anygate.api.sessions import (
    FLOW_COOKIE,
    SESSION_COOKIE,
    SESSION_SCOPE_KEY,
    clear_cookie,
    cookie_value,
    set_cookie,
)
from anygate.api.state import AppState
from anygate.errors import NotFound, ServiceUnavailable
from anygate.signin.service import FLOW_SECONDS, Session, SignIn, SignInFailed

router = APIRouter(tags=["sign-in"])
log = logging.getLogger("anygate.signin")
CALLBACK_PATH = "/auth/oidc/callback"


def signin_of(state: AppState) -> SignIn:
    if state.signin is None:
        raise NotFound("OpenID Connect sign-in is not configured (oidc: in the settings)", code="signin_off")
    return state.signin


def is_https(request: Request) -> bool:
    """Whether the browser reaches this gateway over https (cookies are then ``Secure``): the request says
    so, or the configured callback URL does (a proxy in front that ends TLS)."""
    signin = request.app.state.anygate.signin
    configured = signin.config.redirect_url if signin is not None else None
    return request.url.scheme == "https" or (configured or "").startswith("https://")


def redirect_uri(signin: SignIn, request: Request) -> str:
    """The callback URL registered at the issuer: the configured one, else this request's own origin."""
    if signin.config.redirect_url is not None:
        return signin.config.redirect_url
    return f"{request.url.scheme}://{request.url.netloc}{CALLBACK_PATH}"


@router.get("/auth/oidc")
async def signin_info(state: StateDep) -> dict[str, Any]:
    """Whether sign-in with an OpenID issuer is on, and the name the console's button shows."""
    if state.signin is None:
        return {"enabled": False, "issuer": None, "display_name": None, "login_url": None}
    return {
        "enabled": True,
        "issuer": state.signin.config.issuer_url,
        "display_name": state.signin.display_name,
        "login_url": "/auth/oidc/login",
    }


@router.get("/auth/oidc/login", status_code=302)
async def login(request: Request, state: StateDep, return_to: str | None = None) -> RedirectResponse:
    """To the issuer's sign-in page, with a state (used once), a nonce and a PKCE challenge (S256)."""
    signin = signin_of(state)
    try:
        started = await signin.begin(redirect_uri(signin, request), return_to)
    except SignInFailed as exc:
        log.warning("console sign-in could not start", extra={"fields": {"reason": exc.reason, "error": str(exc)}})
        raise ServiceUnavailable(f"The OpenID issuer cannot be used now: {exc}", code="signin_unavailable") from None
    response = RedirectResponse(started.location, status_code=302)
    secure = is_https(request)
    flow = set_cookie(FLOW_COOKIE, started.flow_cookie, path=CALLBACK_PATH, max_age=FLOW_SECONDS, secure=secure)
    response.headers.append("set-cookie", flow)
    response.headers["cache-control"] = "no-store"
    return response


def refused(reason: str, secure: bool) -> RedirectResponse:
    response = RedirectResponse("/ui/?signin_error=" + quote(reason, safe=""), status_code=303)
    response.headers.append("set-cookie", clear_cookie(FLOW_COOKIE, path=CALLBACK_PATH, secure=secure))
    response.headers["cache-control"] = "no-store"
    return response


@router.get("/auth/oidc/callback", status_code=303)
async def callback(
    request: Request,
    app_state: StateDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> RedirectResponse:
    """Back from the issuer: a session, or a return to the console saying why not (``signin_error``)."""
    signin = signin_of(app_state)
    secure = is_https(request)
    if error is not None or not code or not state:
        reason = "denied" if error == "access_denied" else "issuer_error" if error else "incomplete"
        return refused(reason, secure)
    try:
        session, target = await signin.finish(code, state, cookie_value(request.scope["headers"], FLOW_COOKIE))
    except SignInFailed as exc:
        log.warning("console sign-in refused", extra={"fields": {"reason": exc.reason, "error": str(exc)}})
        return refused(exc.reason, secure)
    if app_state.keyring.signed_in(session.user_id) is None:
        await app_state.store_changed()  # a user record made now: this worker knows it before the next request
    response = RedirectResponse(target, status_code=303)
    max_age = int(signin.config.session_hours * 3600)
    response.headers.append("set-cookie", clear_cookie(FLOW_COOKIE, path=CALLBACK_PATH, secure=secure))
    response.headers.append(
        "set-cookie", set_cookie(SESSION_COOKIE, signin.seal(session), path="/", max_age=max_age, secure=secure)
    )
    response.headers["cache-control"] = "no-store"
    return response


def session_view(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {"signed_in": False}
    return {
        "signed_in": True,
        "role": "admin" if session.is_admin else "user",
        "name": session.name,
        "user_id": session.user_id,
        "csrf_token": session.csrf,
        "expires_at": int(session.expires_at),
    }


@router.get("/auth/session")
async def current_session(request: Request) -> JSONResponse:
    """The console session this browser holds (``signed_in: false`` without one); never the admin key."""
    session = request.scope.get(SESSION_SCOPE_KEY)
    response = JSONResponse(session_view(session if isinstance(session, Session) else None))
    response.headers["cache-control"] = "no-store"
    return response


@router.post("/auth/session/logout")
async def logout(request: Request) -> JSONResponse:
    """End the console session in this browser (the cookie is cleared)."""
    response = JSONResponse({"signed_in": False})
    response.headers.append("set-cookie", clear_cookie(SESSION_COOKIE, path="/", secure=is_https(request)))
    return response
