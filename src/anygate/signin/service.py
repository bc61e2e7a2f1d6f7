"""Sign-in as a flow: ``begin`` sends the browser to the issuer, ``finish`` takes it back, and
``read_session`` tells the edge who a session cookie is (no I/O: it runs on every console request).

    begin    a state, a nonce and a PKCE verifier (S256), sealed with the redirect URI and where to return
             into a short-lived cookie bound to this browser (nothing is stored)
    finish   the cookie's state is the one the issuer sent back; the store records it used, with this code
             (each comes back once); the code is exchanged at the token endpoint; the ID token is checked; the
             claims decide the standing (``rules``); a user record is found or made; a session is sealed
    session  the admin, or a user record (its caller comes from the key ring's cache, which the store's
             sync keeps: a deleted user's sessions stop), a CSRF token, and an expiry
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from anygate.settings import OidcSettings
from anygate.signin.id_tokens import TokenRefused, UnknownKey, validate_id_token
from anygate.signin.issuer import IssuerClient, IssuerError
from anygate.signin.rules import standing_of
from anygate.signin.sealing import Sealer
from anygate.store.crypto import SecretBox
from anygate.store.signins import SigninStore

log = logging.getLogger("anygate.signin")

FLOW_SECONDS = 600
DEFAULT_RETURN = "/ui/"


class SignInFailed(Exception):
    """A sign-in that did not complete; ``reason`` is a short code the console translates."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the sealed cookie that binds the sign-in to it."""

    location: str
    flow_cookie: str


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: the admin (``user_id`` None) or a user record. ``csrf`` must come back in the
    ``x-csrf-token`` header of every state-changing request the cookie authenticates."""

    user_id: str | None
    name: str
    csrf: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return self.user_id is None

    def payload(self) -> dict[str, Any]:
        return {"u": self.user_id, "n": self.name, "c": self.csrf, "exp": self.expires_at}


def safe_return(target: str | None) -> str:
    """Where the browser goes after signing in: a path of the console, never another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return DEFAULT_RETURN
    if any(ord(character) < 0x21 for character in target):
        return DEFAULT_RETURN
    return target


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class SignIn:
    def __init__(self, config: OidcSettings, issuer: IssuerClient, signins: SigninStore, box: SecretBox) -> None:
        self.config = config
        self.issuer = issuer
        self.signins = signins
        self._flows = Sealer(box, "sign-in flow")
        self._sessions = Sealer(box, "console session")

    def __repr__(self) -> str:
        return f"SignIn(issuer={self.config.issuer_url!r})"

    @property
    def display_name(self) -> str:
        return self.config.display_name or urlsplit(self.config.issuer_url).hostname or self.config.issuer_url

    async def begin(self, redirect_uri: str, return_to: str | None) -> Started:
        try:
            metadata = await self.issuer.metadata()
        except IssuerError as exc:
            raise SignInFailed("issuer_" + exc.reason, str(exc)) from None
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        expires = time.time() + FLOW_SECONDS
        flow = {"s": state, "n": nonce, "v": verifier, "r": redirect_uri, "t": safe_return(return_to), "exp": expires}
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return Started(metadata.authorization_endpoint + separator + urlencode(query), self._flows.seal(flow))

    async def finish(self, code: str, state: str, flow_cookie: str | None) -> tuple[Session, str]:
        """The session for this callback and where to return; raises SignInFailed naming the reason."""
        flow = self._flows.open(flow_cookie) if flow_cookie else None
        if flow is None:
            raise SignInFailed("flow", "no sign-in under way in this browser (or it took over ten minutes)")
        if not secrets.compare_digest(str(flow.get("s", "")).encode(), state.encode()):
            raise SignInFailed("state", "the state is not the one this browser's sign-in sent")
        expires = datetime.fromtimestamp(float(flow["exp"]), UTC)
        if not await self.signins.use_flow(digest(state), digest(code), expires):
            raise SignInFailed("replayed", "this sign-in (its state or its code) was used already")
        try:
            answer = await self.issuer.exchange(code, str(flow["v"]), str(flow["r"]))
            claims = await self._checked(answer["id_token"], str(flow["n"]))
        except IssuerError as exc:
            raise SignInFailed("issuer_" + exc.reason, str(exc)) from None
        except TokenRefused as exc:
            raise SignInFailed(exc.reason, str(exc)) from None
        session = await self._session_for(claims)
        return session, safe_return(str(flow.get("t")))

    async def _checked(self, token: str, nonce: str) -> dict[str, Any]:
        metadata = await self.issuer.metadata()
        check = {"issuer": metadata.issuer, "client_id": self.config.client_id, "nonce": nonce}
        try:
            return validate_id_token(token, await self.issuer.signing_keys(), algorithms=metadata.algorithms, **check)
        except UnknownKey:
            keys = await self.issuer.signing_keys(refetch=True)
            return validate_id_token(token, keys, algorithms=metadata.algorithms, **check)

    async def _session_for(self, claims: dict[str, Any]) -> Session:
        standing = standing_of(self.config, claims)
        if standing is None:
            log.info("console sign-in refused by the rules", extra={"fields": {"issuer": self.config.issuer_url}})
            raise SignInFailed("not_allowed", "the issuer vouched for this person, but no rule admits them")
        expires = time.time() + self.config.session_hours * 3600
        csrf = secrets.token_urlsafe(32)
        if standing.role == "admin":
            log.info("console sign-in", extra={"fields": {"role": "admin"}})
            return Session(None, standing.name, csrf, expires)
        fields = {"budget": self.config.new_user_budget, "limits": self.config.new_user_limits}
        user = await self.signins.user_for(self.config.issuer_url, standing.identity, standing.name, fields)
        log.info("console sign-in", extra={"fields": {"role": standing.role, "user": user.id}})
        return Session(user.id, standing.name if standing.role == "user" else user.name, csrf, expires)

    def seal(self, session: Session) -> str:
        return self._sessions.seal(session.payload())

    def read_session(self, cookie: str) -> Session | None:
        """The session a cookie holds, or None (forged, tampered with, sealed for something else, expired)."""
        payload = self._sessions.open(cookie)
        if payload is None:
            return None
        user_id, name, csrf = payload.get("u"), payload.get("n"), payload.get("c")
        if not (user_id is None or isinstance(user_id, str)) or not isinstance(name, str) or not isinstance(csrf, str):
            return None
        return Session(user_id, name, csrf, float(payload["exp"]))
