"""A real OpenID Connect issuer on loopback, for sign-in tests: Authlib's authorization server (the
authorization code grant, PKCE required, the OpenID Connect ID token, nonce required) in a small Flask app
served by werkzeug on a thread. It has a login page with a user name and a password, as issuers do.

    with running_issuer(users={"ada": ("pw", {"email": "ada@example.edu", "groups": ["admins"]})}) as issuer:
        issuer.url, issuer.client_id, issuer.client_secret

``issuer.tamper`` changes the next ID tokens (``{"aud": "someone-else"}``, ``{"iss": ...}``, ``{"exp": ...}``,
``{"nonce": ...}``) and ``issuer.sign_with_other_key`` signs them with a key it does not publish: an issuer
that misbehaves, to show anygate refuses what it sends.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import flask
import werkzeug.serving
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import ClientMixin
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test issuer: sign in</title></head>
<body><h1>Test issuer</h1><p>Sign in to continue to {client}</p>
<form method="post" action="{action}">
<label>User name <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
{error}<button type="submit">Sign in</button></form></body></html>"""


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in ("openid", "email", "profile", "groups"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return "0"

    def get_amr(self) -> list[str]:
        return ["pwd"]


class LoopbackIssuer:
    """The issuer's state: its users, clients, codes, signing key, and what it should get wrong.

    ``rotate_key()`` replaces its signing key with one under a new key id, as issuers do from time to time.
    """

    def __init__(self, users: dict[str, tuple[str, dict[str, Any]]]) -> None:
        self.users = users
        self.client_id = "anygate-console"
        self.client_secret = secrets.token_urlsafe(24)
        self.redirect_uris: list[str] = []
        self.codes: dict[str, Code] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.tamper: dict[str, Any] = {}  # claims the next ID tokens get wrong
        self.sign_with_other_key = False
        self.token_requests: list[dict[str, str]] = []
        self.url = ""
        self.app = self._build()

    def rotate_key(self) -> None:
        kid = f"k{int(str(self.key.kid)[1:]) + 1}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    def _build(self) -> flask.Flask:
        app = flask.Flask("test-issuer")
        issuer = self

        class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                payload = request.payload
                issuer.codes[code] = Code(
                    code,
                    request.client.client_id,
                    payload.redirect_uri,
                    request.scope,
                    request.user,
                    payload.data.get("nonce"),
                    payload.data.get("code_challenge"),
                    payload.data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = issuer.codes.get(code)
                return found if found is not None and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                issuer.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> str:
                return authorization_code.user

        class IdToken(OpenIDCode):  # type: ignore[misc]
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(code.nonce == nonce for code in issuer.codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return issuer.other_key if issuer.sign_with_other_key else issuer.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": str(issuer.key.kid)}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                now = int(time.time())
                claims = {"iss": issuer.url, "aud": [client.client_id], "exp": now + 300}
                return {**claims, **{k: v for k, v in issuer.tamper.items() if k != "nonce"}}

            def generate_user_info(self, user: str, scope: str) -> dict[str, Any]:
                info = {"sub": "subject-" + user, **issuer.users[user][1]}
                if "nonce" in issuer.tamper:
                    info["nonce"] = issuer.tamper["nonce"]
                return info

        def query_client(client_id: str) -> Client | None:
            if client_id != issuer.client_id:
                return None
            return Client(issuer.client_id, issuer.client_secret, issuer.redirect_uris)

        server = AuthorizationServer(app, query_client=query_client, save_token=lambda token, request: None)
        server.register_grant(CodeGrant, [CodeChallenge(required=True), IdToken(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return {
                "issuer": issuer.url,
                "authorization_endpoint": issuer.url + "/authorize",
                "token_endpoint": issuer.url + "/token",
                "jwks_uri": issuer.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/jwks")
        def jwks() -> Any:
            return KeySet([issuer.key]).as_dict(private=False)

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            try:
                grant = server.get_consent_grant(end_user=None)
            except OAuth2Error as exc:  # an invalid request: the page says so, as issuers do
                return f"<p>Invalid request: {html.escape(str(exc))}</p>", 400
            if flask.request.method == "GET":
                return page(grant, "")
            name = flask.request.form.get("username", "")
            user = issuer.users.get(name)
            if user is None or not secrets.compare_digest(user[0], flask.request.form.get("password", "")):
                return page(grant, '<p role="alert">Wrong user name or password</p>'), 401
            return server.create_authorization_response(grant=grant, grant_user=name)

        def page(grant: Any, error: str) -> str:
            action = html.escape(flask.request.full_path)
            return LOGIN_PAGE.format(client=html.escape(grant.client.client_id), action=action, error=error)

        @app.post("/token")
        def token() -> Any:
            issuer.token_requests.append(dict(flask.request.form))
            return server.create_token_response()

        return app


class ServerThread:
    def __init__(self, app: flask.Flask) -> None:
        self.server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_port)


@contextmanager
def running_issuer(users: dict[str, tuple[str, dict[str, Any]]]) -> Iterator[LoopbackIssuer]:
    issuer = LoopbackIssuer(users)
    serving = ServerThread(issuer.app)
    issuer.url = f"http://127.0.0.1:{serving.port}"
    serving.thread.start()
    try:
        yield issuer
    finally:
        serving.server.shutdown()
        serving.server.server_close()
        serving.thread.join(5)
