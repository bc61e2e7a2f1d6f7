"""Who is calling: the client's key from its headers, looked up in a cache of key hashes.

Keys are compared as SHA-256 digests: a dict lookup by digest reveals nothing about the key through
timing, and the admin key is compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from anygate.files import make_private_dir

ADMIN_KEY_FILE = "admin_key.sha256"
KEY_PREFIX = "sk-ag-"
CREDENTIAL_HEADERS = (b"authorization", b"x-api-key", b"api-key")
SESSION_PREFIX = "session:"


BudgetMode = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend budget of a key, a user or a team: as stored, and as the accounting enforces it.

    ``None`` for ``tokens``, ``usd`` or ``requests`` means unlimited in that unit. ``period`` is the
    window: ``daily | weekly | monthly | none`` or ``<N>h`` (``accounting.periods``).
    """

    tokens: int | None = None
    usd: float | None = None
    period: str = "none"
    mode: BudgetMode = "hard"
    requests: int | None = None

    @property
    def is_hard(self) -> bool:
        return self.mode == "hard"


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits as stored on a key or a user; ``None`` means no limit."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``models``/``providers`` are glob allowlists; ``None`` allows all.

    A model pattern matches ``<provider id>/<model>`` (``groq/*`` is every model of provider ``groq``),
    a provider pattern a provider id. ``budgets``/``limits`` are the key's own; ``user_budgets``/
    ``user_limits`` those of the user that owns it, ``team_budgets``/``team_limits`` those of the user's
    team (a key counts against all three); the team's allowlists bind the key too. ``ancestors`` are the
    keys that made this one, its creator first: their allowlists bind it too, and its spend counts
    against their budgets and rate limits. ``expires_at`` is a UNIX time, the earliest along that chain;
    past it the key stops working. ``via_session``: a person signed in to the console (``session_principal``).
    """

    key_id: str
    is_admin: bool
    label: str = ""
    user_id: str | None = None
    models: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    expires_at: float | None = None
    budgets: tuple[Budget, ...] = ()
    limits: Limits | None = None
    user_budgets: tuple[Budget, ...] = ()
    user_limits: Limits | None = None
    ancestors: tuple[Principal, ...] = ()
    via_session: bool = False  # a person signed in to the console (a cookie), not a key
    team_id: str | None = None
    team_budgets: tuple[Budget, ...] = ()
    team_limits: Limits | None = None
    team_models: tuple[str, ...] | None = None
    team_providers: tuple[str, ...] | None = None
    is_team_admin: bool = False  # manages its team's users and keys (``team_id``), nothing else
    _decisions: dict[tuple[str, str], bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def budget(self) -> Budget | None:
        """The key's first budget (the one a key had before keys had several)."""
        return self.budgets[0] if self.budgets else None

    @property
    def user_budget(self) -> Budget | None:
        return self.user_budgets[0] if self.user_budgets else None

    def may_use(self, provider_id: str, model: str) -> bool:
        """Whether this caller may reach ``model`` on ``provider_id`` (memoised: called per request)."""
        if (
            self.models is None
            and self.providers is None
            and not self.ancestors
            and self.team_models is None
            and self.team_providers is None
        ):
            return True
        decision = self._decisions.get((provider_id, model))
        if decision is None:
            decision = (
                self._allows(provider_id, model)
                and _allowed(self.team_providers, provider_id)
                and _allowed(self.team_models, f"{provider_id}/{model}")
                and all(ancestor.may_use(provider_id, model) for ancestor in self.ancestors)
            )
            if len(self._decisions) < 4096:
                self._decisions[(provider_id, model)] = decision
        return decision

    def _allows(self, provider_id: str, model: str) -> bool:
        # Only the provider-qualified name: a bare upstream name would let `vendor/*` match `other/vendor/x`.
        return _allowed(self.providers, provider_id) and _allowed(self.models, f"{provider_id}/{model}")

    @property
    def restricts_models(self) -> bool:
        """Whether some model allowlist binds this caller: its own, its team's or a key's above it."""
        return (
            self.models is not None
            or self.team_models is not None
            or any(ancestor.restricts_models for ancestor in self.ancestors)
        )

    def may_use_provider(self, provider_id: str) -> bool:
        """Whether this caller may reach ``provider_id`` at all (its provider allowlist; models aside)."""
        return (
            _allowed(self.providers, provider_id)
            and _allowed(self.team_providers, provider_id)
            and all(ancestor.may_use_provider(provider_id) for ancestor in self.ancestors)
        )

    def may_reach_provider(self, provider_id: str) -> bool:
        """Whether some model of ``provider_id`` may be allowed: its provider allowlists, and every model
        allowlist (its own, its team's, its ancestors') has a pattern that could match ``<provider>/...``.
        For a request that names no model (``GET /proxy/{provider}/v1/models``)."""
        return (
            self.may_use_provider(provider_id)
            and _may_match_provider(self.models, provider_id)
            and _may_match_provider(self.team_models, provider_id)
            and all(ancestor.may_reach_provider(provider_id) for ancestor in self.ancestors)
        )

    def has_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _may_match_provider(patterns: tuple[str, ...] | None, provider_id: str) -> bool:
    """Whether a pattern may match a name ``<provider_id>/...``: its text before the first glob character
    and ``<provider_id>/`` agree as far as both go (over-approximate: never closes a reachable provider)."""
    if patterns is None:
        return True
    qualified = provider_id + "/"
    for pattern in patterns:
        literal = pattern[: next((i for i, c in enumerate(pattern) if c in "*?["), len(pattern))]
        if qualified.startswith(literal) or literal.startswith(qualified):
            return True
    return False


def _allowed(patterns: tuple[str, ...] | None, name: str) -> bool:
    if patterns is None:
        return True
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def session_principal(user_id: str, name: str, budgets: tuple[Budget, ...], limits: Limits | None) -> Principal:
    """The caller a person signed in as a user record is: that user, with its budget and limits, and no key
    of its own (``key_id`` names the user, so the keys it makes stand on their own, owned by the user)."""
    return Principal(
        key_id=SESSION_PREFIX + user_id,
        is_admin=False,
        label=name,
        user_id=user_id,
        user_budgets=budgets,
        user_limits=limits,
        via_session=True,
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def extract_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """``Authorization: Bearer <key>``, ``x-api-key: <key>`` or ``api-key: <key>``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name in (b"x-api-key", b"api-key") and value.strip():
            return value.decode("latin-1").strip()
    return None


class KeyRing:
    """Digest → Principal for every key that may call the gateway; rebuilt when the store changes."""

    def __init__(self, admin_digest: str | None, no_auth: bool = False) -> None:
        self._admin_digest = admin_digest
        self._no_auth = no_auth
        self._principals: dict[str, Principal] = {}
        self._users: dict[str, Principal] = {}
        self.admin = Principal(key_id="admin", is_admin=True, label="admin")
        self.signed_in_admin = Principal(key_id="admin", is_admin=True, label="admin", via_session=True)

    def replace(self, principals: dict[str, Principal], users: dict[str, Principal] | None = None) -> None:
        """Every key's caller by digest, and (``users``) every user record's caller for console sessions."""
        self._principals = principals
        if users is not None:
            self._users = users

    def signed_in(self, user_id: str | None) -> Principal | None:
        """The caller of a console session: the admin (``None``), or a user record that still exists."""
        return self.signed_in_admin if user_id is None else self._users.get(user_id)

    def add(self, digest: str, principal: Principal) -> None:
        self._principals = {**self._principals, digest: principal}

    def authenticate(self, token: str | None) -> Principal | None:
        if token is None:
            return self.admin if self._no_auth else None
        digest = hash_key(token)
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return self.admin
        principal = self._principals.get(digest)
        if principal is not None and principal.has_expired(time.time()):
            return None
        if principal is None and self._no_auth:
            # Clients such as the OpenAI SDK always send some key; with --no-auth any unknown one will do.
            return self.admin
        return principal


def stored_admin_digest(data_dir: Path) -> str | None:
    path = data_dir / ADMIN_KEY_FILE
    return path.read_text().strip() if path.is_file() else None


def ensure_admin_key(data_dir: Path) -> str | None:
    """Generate the admin key at first start: store its digest (0600) and return the key to print once."""
    if stored_admin_digest(data_dir) is not None:
        return None
    make_private_dir(data_dir)
    key = new_key()
    path = data_dir / ADMIN_KEY_FILE
    path.touch(mode=0o600)
    path.write_text(hash_key(key) + "\n")
    return key
