"""The pure parts of sign-in: who the rules admit as what, sealed cookies, and the ID token's checks
(real JWTs signed with real keys, as an issuer would make them)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from anygate.settings import OidcSettings
from anygate.signin.id_tokens import TokenRefused, UnknownKey, validate_id_token
from anygate.signin.rules import Standing, standing_of
from anygate.signin.sealing import Sealer
from anygate.signin.service import safe_return
from anygate.store.crypto import SecretBox, generate_key

ISSUER = "https://idp.example.edu/realms/campus"
PHYSICS = Standing("team", "team:physics", "physics")


def config(**fields: Any) -> OidcSettings:
    return OidcSettings.model_validate({"issuer": ISSUER, "client_id": "anygate", **fields})


@pytest.mark.parametrize(
    ("fields", "claims", "expected"),
    [
        ({"admin_groups": ["ops"]}, {"groups": ["ops", "x"]}, Standing("admin", "sub:s", "a@x.edu")),
        ({"admin_groups": ["ops"]}, {"groups": "ops"}, Standing("admin", "sub:s", "a@x.edu")),
        ({"admin_claims": {"email": ["a@x.edu"]}}, {"email_verified": True}, Standing("admin", "sub:s", "a@x.edu")),
        ({"admin_claims": {"email": ["a@x.edu"]}}, {"email_verified": False}, None),  # unverified email
        ({"admin_groups": ["ops"]}, {"groups": ["students"]}, None),
        ({"user_groups": ["students"]}, {"groups": ["students"]}, Standing("user", "sub:s", "a@x.edu")),
        ({"user_claims": {"hd": ["x.edu"]}}, {"hd": "x.edu"}, Standing("user", "sub:s", "a@x.edu")),
        ({"user_claims": {"hd": ["x.edu"]}}, {"hd": "y.edu"}, None),
        ({"allow_everyone": True}, {}, Standing("user", "sub:s", "a@x.edu")),
        ({"allow_everyone": True, "team_claim": "dept"}, {"dept": "physics"}, PHYSICS),
        ({"team_claim": "dept"}, {"dept": "physics"}, None),  # a team claim alone admits no one
        ({"allow_everyone": True, "user_claim": "upn"}, {"upn": "ada@corp"}, Standing("user", "sub:s", "ada@corp")),
        ({"allow_everyone": True}, {"email": None, "name": "Ada"}, Standing("user", "sub:s", "Ada")),
        ({"allow_everyone": True}, {"email": None}, Standing("user", "sub:s", "s")),
        ({"admin_claims": {"roles": ["1"]}}, {"roles": [1, True]}, Standing("admin", "sub:s", "a@x.edu")),
    ],
)
def test_standing_from_claims(fields: dict[str, Any], claims: dict[str, Any], expected: Standing | None) -> None:
    assert standing_of(config(**fields), {"sub": "s", "email": "a@x.edu", **claims}) == expected


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        (None, "/ui/"),
        ("/ui/#keys", "/ui/#keys"),
        ("/ui", "/ui"),
        ("https://evil.example/ui", "/ui/"),
        ("//evil.example", "/ui/"),
        ("/uievil", "/uievil"),  # still this site: a path the console 404s, never another host
        ("/ui/\\evil", "/ui/"),
        ("/ui/\r\nSet-Cookie: x", "/ui/"),
        ("/v1/keys", "/ui/"),
    ],
)
def test_return_paths_stay_on_this_site(asked: str | None, kept: str) -> None:
    assert safe_return(asked) == kept


def test_settings_need_the_openid_scope_and_a_url() -> None:
    with pytest.raises(ValueError, match="openid"):
        config(scopes=["email"])
    with pytest.raises(ValueError, match="http"):
        config(issuer="ftp://idp.example.edu")
    assert config(issuer=ISSUER + "/").issuer_url == ISSUER
    assert "secret" not in repr(config(client_secret="secret-value"))


def box() -> SecretBox:
    return SecretBox.from_texts([generate_key()], "test")


def test_a_seal_opens_only_for_its_purpose_and_until_it_expires() -> None:
    keys = box()
    sessions, flows = Sealer(keys, "console session"), Sealer(keys, "sign-in flow")
    sealed = sessions.seal({"u": "usr_1", "exp": time.time() + 60})
    assert sessions.open(sealed) == {"u": "usr_1", "exp": pytest.approx(time.time() + 60, abs=2)}
    assert flows.open(sealed) is None
    assert sessions.open(sealed, now=time.time() + 61) is None
    assert Sealer(box(), "console session").open(sealed) is None  # another gateway's key
    kid, data = sealed.split(".")
    # A character changed in the middle: the last may carry only padding bits, and changing those (A to B)
    # leaves the bytes as they were, a seal that rightly still opens.
    tampered = f"{kid}.{data[:10]}{'A' if data[10] != 'A' else 'B'}{data[11:]}"
    for forged in (tampered, kid + ".", "nokey", f"{kid}.!!!", ""):
        assert sessions.open(forged) is None
    assert sessions.open(sessions.seal({"u": "x"})) is None  # no expiry: never valid
    assert "usr_1" not in sealed


def test_a_rotated_secret_key_still_opens_older_seals() -> None:
    old = box()
    sealed = Sealer(old, "console session").seal({"exp": time.time() + 60})
    rotated = SecretBox({**old.keys, **box().keys}, current=next(iter(box().keys)))
    rotated.current = [k for k in rotated.keys if k != old.current][0]
    assert Sealer(rotated, "console session").open(sealed) is not None


# ---------------------------------------------------------------------------------------- ID tokens

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*pairs: tuple[Any, str]) -> dict[str, Any]:
    keys = []
    for private, kid in pairs:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        keys.append({**public, "kid": kid, "use": "sig", "alg": "RS256"})
    return {"keys": keys}


def token(claims: dict[str, Any] | None = None, key: Any = KEY, kid: str | None = "k1", alg: str = "RS256") -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "anygate", "sub": "s", "iat": now, "exp": now + 300, "nonce": "n1", **(claims or {})}
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def check(raw: str, keys: dict[str, Any] | None = None) -> dict[str, Any]:
    return validate_id_token(
        raw,
        keys or jwks((KEY, "k1")),
        issuer=ISSUER,
        client_id="anygate",
        nonce="n1",
        algorithms=frozenset({"RS256"}),
    )


def test_a_good_id_token_passes() -> None:
    assert check(token())["sub"] == "s"
    assert check(token({"aud": ["anygate", "other"], "azp": "anygate"}))["sub"] == "s"
    assert check(token(kid=None))["sub"] == "s"  # one published key: no kid needed


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "n2"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": "other"}, "audience"),
        ({"aud": ["anygate", "other"]}, "audience"),  # several audiences and no azp
        ({"aud": ["anygate", "other"], "azp": "other"}, "audience"),
        ({"iss": ISSUER + "/other"}, "issuer"),
        ({"iss": None}, "id_token"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": None}, "id_token"),
        ({"sub": None}, "id_token"),
    ],
)
def test_an_id_token_failing_a_check_is_refused(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        check(token(claims))
    assert refused.value.reason == reason


def test_signatures_and_algorithms() -> None:
    with pytest.raises(TokenRefused, match="signature"):
        check(token(key=OTHER))
    with pytest.raises(UnknownKey):
        check(token(kid="k9"))
    with pytest.raises(TokenRefused) as hmac_signed:  # the client secret as an HMAC key: never
        check(token(key="client-secret-value-long-enough-for-hmac-256", alg="HS256"))
    assert hmac_signed.value.reason == "algorithm"
    unsigned = jwt.encode({"iss": ISSUER, "aud": "anygate", "sub": "s", "nonce": "n1"}, None, algorithm="none")
    with pytest.raises(TokenRefused) as none:
        check(unsigned)
    assert none.value.reason == "algorithm"
    with pytest.raises(TokenRefused) as malformed:
        check("not.a.token")
    assert malformed.value.reason == "malformed"
    assert check(token(kid="k2", key=OTHER), jwks((KEY, "k1"), (OTHER, "k2")))["sub"] == "s"


async def test_an_unknown_key_id_fetches_the_keys_again_at_most_once_a_minute() -> None:
    from anygate.signin.issuer import IssuerClient

    answers = {
        f"{ISSUER}/.well-known/openid-configuration": {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/auth",
            "token_endpoint": ISSUER + "/token",
            "jwks_uri": ISSUER + "/certs",
        },
        f"{ISSUER}/certs": jwks((KEY, "k1")),
    }
    transport = JsonTransport(answers)
    now = [1000.0]
    client = IssuerClient(config(), transport, clock=lambda: now[0])
    await client.signing_keys()
    await client.signing_keys()
    assert transport.asked.count(f"{ISSUER}/certs") == 1  # cached
    await client.signing_keys(refetch=True)
    await client.signing_keys(refetch=True)
    assert transport.asked.count(f"{ISSUER}/certs") == 2  # one refetch now, the next after a minute
    now[0] += 61
    await client.signing_keys(refetch=True)
    assert transport.asked.count(f"{ISSUER}/certs") == 3


class JsonResponse:
    def __init__(self, body: Any) -> None:
        import orjson

        from anygate.transport import Headers

        self.status = 200
        self.headers = Headers([(b"content-type", b"application/json")])
        self._body = orjson.dumps(body)

    async def read(self) -> bytes:
        return self._body

    async def aclose(self) -> None:
        return None


class JsonTransport:
    """The network as a table of URLs and JSON answers (the issuer's side; anygate's code runs as it is)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def send(self, request: Any) -> JsonResponse:
        self.asked.append(request.url)
        return JsonResponse(self.answers[request.url])

    async def aclose(self) -> None:
        return None


def test_the_documented_issuer_examples_are_valid_settings() -> None:
    import re

    import yaml

    from tests.support.docs import code_blocks

    examples = [block for block in code_blocks("docs/console.md", "yaml") if "oidc:" in block]
    assert len(examples) == 4  # Keycloak, Entra ID, Google, CILogon
    for block in examples:
        text = re.sub(r"\$\{\w+\}", "a-secret", block).replace("<", "x").replace(">", "x")
        OidcSettings.model_validate(yaml.safe_load(text)["oidc"])


@pytest.mark.parametrize(
    ("configured", "announced", "accepted"),
    [
        (ISSUER, ISSUER, True),
        (ISSUER + "/", ISSUER, True),
        (ISSUER, ISSUER + "/", True),  # Auth0 announces (and its tokens name) the issuer with a slash
        (ISSUER, ISSUER + "/other", False),
        (ISSUER, "https://evil.example/realms/campus", False),
    ],
)
def test_discovery_must_name_the_configured_issuer(configured: str, announced: str, accepted: bool) -> None:
    from anygate.signin.issuer import IssuerError, metadata_of

    document = {
        "issuer": announced,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "jwks_uri": ISSUER + "/certs",
    }
    if accepted:
        assert metadata_of(document, config(issuer=configured)).issuer == announced
    else:
        with pytest.raises(IssuerError):
            metadata_of(document, config(issuer=configured))


def test_discovery_endpoints_are_https_when_the_issuer_is() -> None:
    from anygate.signin.issuer import IssuerError, metadata_of

    document = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": "http://idp.example.edu/token",
        "jwks_uri": ISSUER + "/certs",
    }
    with pytest.raises(IssuerError, match="token_endpoint"):
        metadata_of(document, config())
    with pytest.raises(IssuerError, match="jwks_uri"):
        metadata_of({**document, "token_endpoint": ISSUER + "/token", "jwks_uri": None}, config())


async def test_an_issuer_cannot_point_anygate_at_cloud_metadata() -> None:
    from anygate.signin.issuer import IssuerClient, IssuerError

    lab = "http://10.1.2.3:8443"
    transport = JsonTransport(
        {
            f"{lab}/.well-known/openid-configuration": {
                "issuer": lab,
                "authorization_endpoint": lab + "/auth",
                "token_endpoint": lab + "/token",
                "jwks_uri": "http://169.254.169.254/latest/meta-data/",
            }
        }
    )
    client = IssuerClient(config(issuer=lab, allow_private_network=True), transport)
    with pytest.raises(IssuerError) as refused:
        await client.signing_keys()
    assert refused.value.reason == "unsafe"
    assert transport.asked == [f"{lab}/.well-known/openid-configuration"]  # nothing sent to the metadata address
    with pytest.raises(IssuerError) as private:
        await IssuerClient(config(issuer=lab), JsonTransport({})).metadata()
    assert private.value.reason == "unsafe"  # a private issuer needs allow_private_network
