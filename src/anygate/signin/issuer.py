"""The OpenID issuer as anygate talks to it: discovery (``/.well-known/openid-configuration``), the published
signing keys (``jwks_uri``) and the token endpoint, every request through the SSRF-guarded transport
(an issuer on loopback or a private network only with ``allow_private_network``), no redirect followed,
each answer capped. Discovery and keys are cached; the keys are fetched again when a token names a key
they lack (issuers rotate keys), at most once a minute.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from anygate.errors import UpstreamTimeout, UpstreamUnavailable
from anygate.netguard import UnsafeURL, check_url, validate_url_shape
from anygate.settings import OidcSettings
from anygate.transport import OutgoingRequest, Timeouts, Transport

MAX_ANSWER_BYTES = 1024 * 1024
METADATA_SECONDS = 3600.0
KEYS_SECONDS = 3600.0
KEYS_REFETCH_SECONDS = 60.0
ORIGIN = "OpenID issuer"


class IssuerError(Exception):
    """The issuer could not be used: unreachable, or an answer that is not what the protocol says."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Metadata:
    """The parts of the issuer's discovery document that sign-in uses. ``issuer`` is spelt as the document
    spells it, which is how its ID tokens name it (Auth0's ends with a slash, most do not)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: frozenset[str]
    auth_methods: tuple[str, ...]


def metadata_of(document: Any, config: OidcSettings) -> Metadata:
    """Check the discovery document: its ``issuer`` is the configured one, its endpoints are URLs (https
    when the issuer is), and it announces what sign-in needs."""
    if not isinstance(document, dict):
        raise IssuerError("discovery", "the discovery document is not a JSON object")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != config.issuer_url:
        raise IssuerError("discovery", f"the discovery document names issuer {issuer!r}, not {config.issuer_url!r}")
    secure = urlsplit(config.issuer_url).scheme == "https"
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        url = document.get(name)
        if not isinstance(url, str):
            raise IssuerError("discovery", f"the discovery document has no {name}")
        try:
            validate_url_shape(url)
        except UnsafeURL as exc:
            raise IssuerError("discovery", f"{name}: {exc}") from None
        if secure and not url.startswith("https://"):
            raise IssuerError("discovery", f"{name} is not https while the issuer is")
        endpoints[name] = url
    algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return Metadata(
        issuer=issuer,  # as the issuer spells it (a trailing slash too): ID tokens must name it so
        algorithms=frozenset(a for a in algorithms if isinstance(a, str)),
        auth_methods=tuple(m for m in methods if isinstance(m, str)),
        **endpoints,
    )


class IssuerClient:
    """One configured issuer: its metadata and keys (cached) and its token endpoint."""

    def __init__(self, config: OidcSettings, transport: Transport, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._transport = transport
        self._clock = clock
        self._metadata: tuple[float, Metadata] | None = None
        self._keys: tuple[float, dict[str, Any]] | None = None
        self._refetched: float | None = None
        seconds = config.timeout
        self._timeouts = Timeouts(connect=seconds, first_byte=seconds, idle=seconds, total=seconds)

    def __repr__(self) -> str:
        return f"IssuerClient(issuer={self.config.issuer_url!r})"

    async def metadata(self) -> Metadata:
        now = self._clock()
        if self._metadata is not None and now - self._metadata[0] < METADATA_SECONDS:
            return self._metadata[1]
        document = await self._call("GET", self.config.issuer_url + "/.well-known/openid-configuration")
        found = metadata_of(document, self.config)
        self._metadata = (now, found)
        return found

    async def signing_keys(self, refetch: bool = False) -> dict[str, Any]:
        """The published key set; ``refetch`` (a token named a key it lacks) fetches it again, at most once a
        minute: tokens naming made-up keys cannot make anygate hammer the issuer."""
        now = self._clock()
        if self._keys is not None:
            if refetch and self._refetched is not None and now - self._refetched < KEYS_REFETCH_SECONDS:
                return self._keys[1]
            if not refetch and now - self._keys[0] < KEYS_SECONDS:
                return self._keys[1]
        if refetch:
            self._refetched = now
        document = await self._call("GET", (await self.metadata()).jwks_uri)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise IssuerError("keys", "the issuer's key set is not a JSON object with keys")
        self._keys = (now, document)
        return document

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer for this code (its ``id_token`` is not checked here)."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        headers = {"content-type": "application/x-www-form-urlencoded"}
        secret = self.config.client_secret.get_secret_value() if self.config.client_secret else None
        if secret is not None:
            if "client_secret_basic" in metadata.auth_methods or "client_secret_post" not in metadata.auth_methods:
                # RFC 6749 2.3.1: each half form-encoded, then Basic.
                pair = f"{quote(self.config.client_id, safe='')}:{quote(secret, safe='')}"
                headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                form["client_secret"] = secret
        answer = await self._call("POST", metadata.token_endpoint, urlencode(form).encode(), headers)
        if not isinstance(answer, dict) or not isinstance(answer.get("id_token"), str):
            raise IssuerError("token", "the token endpoint's answer has no id_token")
        return answer

    async def _call(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        try:  # literal addresses and metadata names here; the transport's resolver checks the rest
            check_url(url, self.config.allow_private_network)
        except UnsafeURL as exc:
            raise IssuerError("unsafe", f"{ORIGIN} URL refused: {exc}") from None
        request = OutgoingRequest(
            method,
            url,
            {"accept": "application/json", **(headers or {})},
            body,
            self._timeouts,
            self.config.allow_private_network,
            ORIGIN,
        )
        try:
            response = await self._transport.send(request)
            try:
                raw = await response.read()
            finally:
                await response.aclose()
        except (UpstreamUnavailable, UpstreamTimeout) as exc:  # the transport's errors name the origin, never the URL
            raise IssuerError("unreachable", str(exc)) from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise IssuerError("answer", f"the issuer's answer is over {MAX_ANSWER_BYTES} bytes")
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise IssuerError("answer", f"the issuer answered HTTP {response.status} with no JSON") from None
        if response.status != 200:
            code = document.get("error") if isinstance(document, dict) else None
            detail = f" ({code})" if isinstance(code, str) and code.isidentifier() else ""
            raise IssuerError("refused", f"the issuer answered HTTP {response.status}{detail}")
        return document
