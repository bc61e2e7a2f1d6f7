"""What the sign-in tests share: the gateway in-process with a real transport, signed in through a real
issuer on loopback by an httpx client that follows redirects between the two, as a browser does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any

import httpx2

from anygate.settings import Settings
from anygate.transport.aiohttp_transport import AiohttpTransport
from tests.support.gateway import gateway_settings
from tests.support.inprocess import BASE_URL, InProcessGateway, inprocess_gateway
from tests.support.oidc_issuer import LoopbackIssuer

CALLBACK = BASE_URL + "/auth/oidc/callback"
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ada": ("ada-pw", {"email": "ada@example.edu", "email_verified": True, "groups": ["staff", "anygate-admins"]}),
    "bob": ("bob-pw", {"email": "bob@example.edu", "email_verified": True, "groups": ["students"]}),
    "cy": ("cy-pw", {"email": "cy@example.edu", "groups": ["students"], "department": "physics"}),
    "di": ("di-pw", {"email": "di@example.edu", "groups": ["students"], "department": "physics"}),
    "eve": ("eve-pw", {"email": "eve@example.com", "groups": ["visitors"]}),
}


def oidc_fields(issuer: LoopbackIssuer, **fields: Any) -> dict[str, Any]:
    """``oidc:`` for the issuer: admins in ``anygate-admins``, users in ``students``."""
    return {
        "issuer": issuer.url,
        "client_id": issuer.client_id,
        "client_secret": issuer.client_secret,
        "display_name": "Test issuer",
        "admin_groups": ["anygate-admins"],
        "user_groups": ["students"],
        "allow_private_network": True,
        **fields,
    }


def oidc_settings(issuer: LoopbackIssuer, **fields: Any) -> Settings:
    """Gateway settings with sign-in through the issuer, reached in-process at ``BASE_URL``."""
    issuer.redirect_uris = [CALLBACK]
    return gateway_settings(oidc=oidc_fields(issuer, **fields))


@contextmanager
def gateway_with(settings: Settings) -> Iterator[InProcessGateway]:
    with inprocess_gateway(settings, transport=AiohttpTransport()) as gw:
        yield gw


def browser(gw: InProcessGateway, issuer: LoopbackIssuer) -> httpx2.Client:
    """A client that reaches the gateway in-process and the issuer on its socket, keeping cookies."""
    return httpx2.Client(
        base_url=BASE_URL, mounts={BASE_URL: gw.transport(), issuer.url: httpx2.HTTPTransport()}, timeout=30
    )


def login_form(page: httpx2.Response) -> str:
    """The URL the issuer's login page posts to."""
    found = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert found is not None, page.text
    return unescape(found.group(1))


def open_login(client: httpx2.Client, issuer: LoopbackIssuer, return_to: str | None = None) -> httpx2.Response:
    """Press "Sign in with ...": to the issuer's login page."""
    params = {"return_to": return_to} if return_to is not None else None
    page = client.get("/auth/oidc/login", params=params, follow_redirects=True)
    assert page.status_code == 200 and str(page.url).startswith(issuer.url + "/authorize"), page.text
    return page


def submit_login(
    client: httpx2.Client, issuer: LoopbackIssuer, page: httpx2.Response, user: str, follow: bool = True
) -> httpx2.Response:
    password = USERS[user][0]
    return client.post(
        issuer.url + login_form(page), data={"username": user, "password": password}, follow_redirects=follow
    )


def sign_in(client: httpx2.Client, issuer: LoopbackIssuer, user: str, return_to: str | None = None) -> httpx2.Response:
    """The whole code flow, following every redirect: where the browser ends up."""
    return submit_login(client, issuer, open_login(client, issuer, return_to), user)


def session_of(client: httpx2.Client) -> dict[str, Any]:
    answer = client.get("/auth/session")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body
