"""Console sessions at the edge: the cookies, and the CSRF check of every state-changing request a session
cookie authenticates.

A session cookie is ``HttpOnly`` (scripts never read it), ``SameSite=Lax`` (other sites' forms and scripts
do not send it along) and ``Secure`` on https. On top of that, a request that changes anything (any method
but GET, HEAD and OPTIONS) must carry the session's CSRF token in ``x-csrf-token`` (the console reads it from
``GET /auth/session``; another site cannot), and when the browser says where it comes from (``Origin``,
``Sec-Fetch-Site``), that must be this site.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit

from anygate.api.http import Scope
from anygate.errors import PermissionDenied
from anygate.signin.service import Session

SESSION_COOKIE = "anygate_session"
FLOW_COOKIE = "anygate_signin"
SESSION_SCOPE_KEY = "anygate.session"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    wanted = name.encode() + b"="
    for header, value in headers:
        if header == b"cookie":
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(wanted):
                    return part[len(wanted) :].decode("latin-1")
    return None


def session_cookie(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    return cookie_value(headers, SESSION_COOKIE)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            given: bytes = value
            return given
    return None


def csrf_refused(reason: str) -> PermissionDenied:
    return PermissionDenied(f"Cross-site request refused: {reason}", code="csrf_failed")


def check_csrf(scope: Scope, session: Session) -> None:
    """Raise 403 ``csrf_failed`` unless a state-changing request shows it comes from the console."""
    if scope["method"] in SAFE_METHODS:
        return
    if header(scope, b"sec-fetch-site") in (b"cross-site",):
        raise csrf_refused("the browser says the request comes from another site")
    origin = header(scope, b"origin")
    if origin is not None:
        host = header(scope, b"host") or b""
        if urlsplit(origin.decode("latin-1")).netloc.lower() != host.decode("latin-1").lower():
            raise csrf_refused("Origin is not this site")
    token = header(scope, CSRF_HEADER)
    if token is None or not hmac.compare_digest(token, session.csrf.encode()):
        raise csrf_refused(f"{CSRF_HEADER.decode()} is missing or wrong")


def set_cookie(name: str, value: str, *, path: str, max_age: int, secure: bool) -> str:
    """A ``Set-Cookie`` value: HttpOnly and SameSite=Lax always, Secure on https."""
    return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")


def clear_cookie(name: str, *, path: str, secure: bool) -> str:
    return set_cookie(name, "", path=path, max_age=0, secure=secure)
