"""The ID token's checks (OpenID Connect Core 3.1.3.7), with PyJWT: the signature with one of the issuer's
published keys under an algorithm the issuer announced (never ``none`` nor a shared-secret HMAC), ``iss``,
``aud`` (and ``azp`` when there are several audiences), ``exp``, ``iat``, ``sub`` and the ``nonce`` this
sign-in sent. Each refusal names what failed, never the token.
"""

from __future__ import annotations

import hmac
from typing import Any

# Public-key algorithms only: with an HMAC algorithm the "key" would be the client secret, and ``none``
# signs nothing.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
LEEWAY_SECONDS = 60


class TokenRefused(Exception):
    """The ID token failed a check; ``reason`` is a short code: signature, issuer, audience, expired, nonce..."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class UnknownKey(TokenRefused):
    """The token names a key the issuer's key set lacks (it may have rotated its keys: fetch them again)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("signature", f"no published key with id {kid!r}")


def signing_key(token: str, jwks: dict[str, Any], algorithms: frozenset[str]) -> tuple[Any, str]:
    """The published key the token's header names, and its algorithm (refused unless announced)."""
    import jwt  # PyJWT and cryptography (~9 MiB resident): imported when a sign-in's token is first checked

    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise TokenRefused("malformed", str(exc)) from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise TokenRefused("algorithm", f"{algorithm!r} is not among {sorted(algorithms)}")
    try:
        keys = [key for key in jwt.PyJWKSet.from_dict(jwks).keys if key.public_key_use in (None, "sig")]
    except jwt.PyJWKError as exc:
        raise TokenRefused("signature", f"the issuer's key set is unusable ({exc})") from None
    kid = header.get("kid")
    chosen = [key for key in keys if key.key_id == kid] if kid is not None else keys
    if len(chosen) != 1:
        raise UnknownKey(kid if isinstance(kid, str) else None)
    return chosen[0].key, algorithm


def validate_id_token(
    token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: frozenset[str],
) -> dict[str, Any]:
    """The token's claims once every check passed; raises TokenRefused (UnknownKey for a key not published)."""
    key, algorithm = signing_key(token, jwks, algorithms & ASYMMETRIC)
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired", "the ID token has expired") from None
    except jwt.InvalidIssuerError:
        raise TokenRefused("issuer", "the ID token's iss is not the configured issuer") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused("audience", "the ID token is not for this client (aud)") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("signature", "the ID token's signature does not verify") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused("id_token", str(exc)) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise TokenRefused("audience", "the ID token has several audiences and its azp is not this client")
    given = claims.get("nonce")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode()):
        raise TokenRefused("nonce", "the ID token's nonce is not the one this sign-in sent")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise TokenRefused("id_token", "the ID token has no subject")
    return claims
