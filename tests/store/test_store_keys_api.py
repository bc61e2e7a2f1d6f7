"""Keys, users, roles and rotation through the API, with the openai SDK as the client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import openai
import pytest

from anygate.auth import hash_key
from anygate.store.database import Database
from anygate.store.keys import KeyStore
from tests.store.conftest import ADMIN_KEY, campus_gateway, eventually
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model", "other-model")))


@pytest.fixture
def gateway(upstream, make_settings, serve):  # type: ignore[no-untyped-def]
    return campus_gateway(upstream.base_url, make_settings, serve)


def chat(gateway, key: str, model: str = "campus/fake-model") -> str:  # type: ignore[no-untyped-def]
    with gateway.sdk(key) as client:
        return client.chat.completions.create(model=model, messages=HI).choices[0].message.content or ""


def stored_hashes(url: str) -> list[tuple[str, str]]:
    async def run() -> list[tuple[str, str]]:
        db = Database(url)
        try:
            return [(k.key_hash, k.key_prefix) for k in await KeyStore(db).list_keys()]
        finally:
            await db.close()

    return asyncio.run(run())


def test_created_key_is_shown_once_stored_as_hash_and_works(gateway, database_url) -> None:
    with gateway.client() as http:
        created = http.post(
            "/v1/keys",
            json={
                "alias": "student-1",
                "models": ["campus/*"],
                "budget": {"tokens": 100000, "usd": 5.0, "period": "daily", "mode": "hard"},
                "limits": {"rpm": 60, "tpm": 100000, "concurrency": 4},
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body["key"]
        assert secret.startswith("sk-ag-")
        assert body["budget"] == {"tokens": 100000, "usd": 5.0, "period": "daily", "mode": "hard"}
        assert body["limits"] == {"rpm": 60, "tpm": 100000, "concurrency": 4}
        fetched = http.get(f"/v1/keys/{body['id']}")
        listed = http.get("/v1/keys")
    assert secret not in fetched.text and secret not in listed.text
    assert "key" not in fetched.json()
    assert fetched.json()["budget"]["period"] == "daily"
    assert (hash_key(secret), secret[:12]) in stored_hashes(database_url)
    assert chat(gateway, secret)
    principal = gateway.app.state.keyring.authenticate(secret)
    assert principal is not None
    assert principal.budget is not None and principal.budget.usd == 5.0 and principal.budget.period == "daily"
    assert principal.limits is not None and principal.limits.rpm == 60


def test_model_allowlist_globs_apply(gateway) -> None:
    with gateway.client() as http:
        secret = http.post("/v1/keys", json={"alias": "narrow", "models": ["campus/fake-*"]}).json()["key"]
    assert chat(gateway, secret)
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, secret, "campus/other-model")


def test_revoked_and_expired_keys_stop_working(gateway) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with gateway.client() as http:
        revoked = http.post("/v1/keys", json={"alias": "a"}).json()
        assert chat(gateway, revoked["key"])
        assert http.delete(f"/v1/keys/{revoked['id']}").json()["status"] == "revoked"
        expired = http.post("/v1/keys", json={"alias": "b"}).json()
        assert http.patch(f"/v1/keys/{expired['id']}", json={"expires_at": past}).json()["status"] == "expired"
        later = http.post("/v1/keys", json={"alias": "c"}).json()
        assert chat(gateway, later["key"])
        assert http.patch(f"/v1/keys/{later['id']}", json={"expires_at": past}).status_code == 200
    for secret in (revoked["key"], expired["key"], later["key"]):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, secret)


BAD_KEY_BODIES = [
    ({}, "alias"),
    ({"alias": "x", "budget": {"period": "yearly"}}, "budget.period"),
    ({"alias": "x", "budget": {"mode": "strict"}}, "budget.mode"),
    ({"alias": "x", "budget": {"usd": -1}}, "budget.usd"),
    ({"alias": "x", "limits": {"rpm": 0}}, "limits.rpm"),
    ({"alias": "x", "models": "campus/*"}, "models"),
    ({"alias": "x", "expires_at": "soon"}, "expires_at"),
    ({"alias": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),  # a new key that would never work
    ({"alias": "x", "budget": {"period": "daily"}}, "budget.period"),  # a period resetting no limit
    ({"alias": "x", "role": "root"}, "role"),
    ({"alias": "x", "user_id": "usr_missing"}, "user_id"),
    ({"alias": "x", "colour": "red"}, "colour"),
]


def test_bad_key_bodies_are_400_naming_the_field(gateway) -> None:
    with gateway.client() as http:
        for body, field in BAD_KEY_BODIES:
            response = http.post("/v1/keys", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == field
            assert field in response.json()["error"]["message"]
        assert http.get("/v1/keys").json()["data"] == []


def test_an_alias_another_live_key_of_the_owner_has_and_unknown_allowlists_are_warned_about(gateway) -> None:
    with gateway.client() as http:
        ada = http.post("/v1/users", json={"name": "Ada"}).json()["id"]
        first = http.post("/v1/keys", json={"alias": "laptop", "user_id": ada}).json()
        taken = http.post("/v1/keys", json={"alias": "laptop", "user_id": ada})
        elsewhere = http.post("/v1/keys", json={"alias": "laptop"})  # no owner: another namespace
        renamed = http.post("/v1/keys", json={"alias": "phone", "user_id": ada}).json()
        rename_taken = http.patch(f"/v1/keys/{renamed['id']}", json={"alias": "laptop"})
        same_again = http.patch(f"/v1/keys/{first['id']}", json={"alias": "laptop"})
        http.delete(f"/v1/keys/{first['id']}")
        freed = http.post("/v1/keys", json={"alias": "laptop", "user_id": ada})
        warned = http.post("/v1/keys", json={"alias": "w", "providers": ["campus", "grok"], "models": ["grok/*"]})
        clean = http.post("/v1/keys", json={"alias": "c", "providers": ["camp*"], "models": ["campus/fake-*"]})
        patched = http.patch(f"/v1/keys/{clean.json()['id']}", json={"models": ["campus/nothing-*"]})
        bad_user = http.post("/v1/users", json={"name": "Bob", "budget": {"period": "weekly"}})
    with gateway.client(renamed["key"]) as own:  # a user key: its sibling 'laptop' keys are not its to know
        child = own.post("/v1/keys", json={"alias": "laptop"})
    assert taken.status_code == 201
    assert taken.json()["warnings"] == [
        f"alias: key {first['id']} is 'laptop' too (among user '{ada}'): reports and the console will show both "
        "by that name"
    ]
    assert elsewhere.status_code == 201 and "warnings" not in elsewhere.json()  # no owner: another namespace
    assert rename_taken.status_code == 200 and len(rename_taken.json()["warnings"]) == 1
    [again] = same_again.json()["warnings"]  # the other 'laptop', never the key itself
    assert taken.json()["id"] in again and first["id"] not in again
    assert "warnings" not in freed.json() or all(first["id"] not in w for w in freed.json()["warnings"])
    assert warned.status_code == 201
    assert warned.json()["warnings"] == [
        "providers: 'grok' matches no provider (providers now: campus)",
        "models: 'grok/*' matches no model any provider serves now (providers now: campus)",
    ]
    assert "warnings" not in clean.json()
    assert patched.json()["warnings"] == [
        "models: 'campus/nothing-*' matches no model any provider serves now (providers now: campus)"
    ]
    assert bad_user.status_code == 400 and bad_user.json()["error"]["param"] == "budget.period"
    assert child.status_code == 201
    assert child.json()["warnings"] == [
        f"alias: another key is 'laptop' too (among user '{ada}'): reports and the console will show both by that name"
    ]


def test_users_own_keys_and_deleting_a_user_stops_them(gateway) -> None:
    with gateway.client() as http:
        user = http.post("/v1/users", json={"name": "Ada", "budget": {"usd": 10, "period": "monthly"}})
        assert user.status_code == 201, user.text
        user_id = user.json()["id"]
        assert user.json()["budget"] == {"tokens": None, "usd": 10.0, "period": "monthly", "mode": "hard"}
        secret = http.post("/v1/keys", json={"alias": "ada-laptop", "user_id": user_id}).json()["key"]
        assert [k["alias"] for k in http.get(f"/v1/users/{user_id}").json()["keys"]] == ["ada-laptop"]
        assert http.patch(f"/v1/users/{user_id}", json={"name": "Ada L."}).json()["name"] == "Ada L."
        assert http.post("/v1/users", json={"name": ""}).json()["error"]["param"] == "name"
        principal = gateway.app.state.keyring.authenticate(secret)
        assert principal.user_id == user_id and principal.user_budget.usd == 10.0
        assert chat(gateway, secret)
        with gateway.client(secret) as own:
            assert own.put("/auth/creds", json={"providers": {"campus": {"apiKey": "sk-ada-own-key-1234"}}}).is_success
        # a key's own provider keys, not its user's (a user record may be shared: routes_creds)
        assert gateway.app.state.caller_keys.as_dict() == {(principal.key_id, "campus"): "sk-ada-own-key-1234"}
        assert http.delete(f"/v1/users/{user_id}").status_code == 200
        assert gateway.app.state.caller_keys.as_dict() == {}
        assert http.get(f"/v1/users/{user_id}").status_code == 404
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, secret)


def test_seed_004_admin_user_routes(gateway) -> None:
    with gateway.client() as http:
        created = http.post("/admin/users", json={"name": "bob"})
        assert created.status_code == 201
        user_id, token = created.json()["id"], created.json()["token"]
        assert token.startswith("sk-ag-")
        assert chat(gateway, token)
        assert user_id in [u["id"] for u in http.get("/admin/users").json()["users"]]
        assert http.delete(f"/admin/users/{user_id}").status_code == 200
        assert user_id not in [u["id"] for u in http.get("/admin/users").json()["users"]]
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, token)
    with gateway.client(token) as http:
        assert http.get("/admin/users").status_code == 401


def test_rotate_gives_the_same_key_a_new_secret_and_keeps_the_old_one_for_an_hour(gateway, upstream) -> None:
    """The key keeps its id, and so its spent budget, alias, expiry and own provider keys (stored under
    the key id when it has no user); only the current secret may rotate; one previous secret at a time."""
    expires = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    budget = {"tokens": 5, "period": "daily", "mode": "hard"}
    with gateway.client() as http:
        old = http.post(
            "/v1/keys",
            json={"alias": "rotating", "models": ["campus/*"], "budget": budget, "expires_at": expires.isoformat()},
        ).json()
    with gateway.client(old["key"]) as own:
        assert own.put("/auth/creds", json={"providers": {"campus": {"apiKey": "sk-own-campus-key-42"}}}).is_success
        assert chat(gateway, old["key"])  # spends more than the 5-token budget
        spent = own.get("/quota").json()["tokens"]
        assert spent["remaining"] <= 0
        rotated = own.post("/auth/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert (new["id"], new["alias"], new["models"], new["budget"]) == (
        old["id"],
        "rotating",
        ["campus/*"],
        old["budget"],
    )
    assert new["expires_at"] == old["expires_at"] and new["key"] != old["key"]
    grace = datetime.fromisoformat(new["previous_key_expires_at"])
    assert timedelta(minutes=59) < grace - datetime.now(UTC) <= timedelta(hours=1)
    with gateway.client(new["key"]) as own:
        assert own.get("/quota").json()["tokens"] == spent  # the same budget, not a fresh one
        assert own.get("/auth/creds").json() == {"providers": {"campus": {"apiKey": "sk-own-c...y-42"}}}
        with pytest.raises(openai.RateLimitError):
            chat(gateway, new["key"])
    with gateway.client(old["key"]) as previous:
        assert previous.get("/v1/models").status_code == 200  # still valid during its hour
        refused = previous.post("/auth/rotate")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "previous_secret"
        assert "only the current secret" in refused.json()["error"]["message"]
    with gateway.client(new["key"]) as own:
        third = own.post("/auth/rotate").json()
    assert third["id"] == old["id"]
    eventually(lambda: gateway.app.state.keyring.authenticate(old["key"]) is None, "the first secret stops")
    with gateway.client(new["key"]) as second:
        assert second.get("/v1/models").status_code == 200  # now the previous secret
    with gateway.client(third["key"]) as current:
        assert current.get("/auth/creds").json()["providers"]["campus"]
    with gateway.client() as http:
        assert http.post("/auth/rotate").status_code == 400  # the configured admin key is not stored
        assert len(http.get("/v1/keys").json()["data"]) == 1  # rotation made no new key


def test_the_previous_secret_stops_when_its_hour_ends(gateway, database_url) -> None:
    with gateway.client() as http:
        old = http.post("/v1/keys", json={"alias": "rotating"}).json()
    with gateway.client(old["key"]) as own:
        new = own.post("/auth/rotate").json()
    assert gateway.app.state.keyring.authenticate(old["key"]) is not None
    asyncio.run(end_grace(database_url, old["id"]))
    eventually(lambda: gateway.app.state.keyring.authenticate(old["key"]) is None, "the previous secret stops")
    assert gateway.app.state.keyring.authenticate(new["key"]) is not None


async def end_grace(url: str, key_id: str) -> None:
    """Move the previous secret's end into the past, as an hour passing would."""
    from sqlalchemy import update

    from anygate.store.tables import api_keys

    db = Database(url)
    try:
        async with db.connect() as connection:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(previous_valid_until=past))
            await db.bump(connection)
    finally:
        await db.close()


def test_user_keys_cannot_reach_management_or_others_keys(gateway) -> None:
    with gateway.client() as http:
        ada = http.post("/v1/users", json={"name": "ada"}).json()["id"]
        bob = http.post("/v1/users", json={"name": "bob"}).json()["id"]
        ada_key = http.post("/v1/keys", json={"alias": "ada", "user_id": ada, "models": ["campus/*"]}).json()
        bob_key = http.post("/v1/keys", json={"alias": "bob", "user_id": bob}).json()
    with gateway.client(ada_key["key"]) as http:
        for method, path in [
            ("GET", "/v1/users"),
            ("POST", "/v1/users"),
            ("GET", "/admin/users"),
            ("POST", "/v1/providers/health-check"),
        ]:
            assert http.request(method, path, json={"name": "x"}).status_code == 403, path
        assert http.get(f"/v1/keys/{bob_key['id']}").status_code == 404
        assert http.delete(f"/v1/keys/{bob_key['id']}").status_code == 404
        assert http.patch(f"/v1/keys/{bob_key['id']}", json={"alias": "x"}).status_code == 404
        assert http.get(f"/v1/keys/{ada_key['id']}").status_code == 200
        assert [k["id"] for k in http.get("/v1/keys").json()["data"]] == [ada_key["id"]]  # never bob's
        assert http.post("/v1/keys", json={"alias": "wide", "models": ["*"]}).status_code == 403
        assert http.post("/v1/keys", json={"alias": "adm", "role": "admin"}).status_code == 403
        assert http.post("/v1/keys", json={"alias": "other", "user_id": bob}).status_code == 403
        assert http.patch(f"/v1/keys/{ada_key['id']}", json={"models": None}).status_code == 403
        child = http.post("/v1/keys", json={"alias": "ada-ci"})
        assert child.status_code == 201, child.text
        assert child.json()["models"] == ["campus/*"] and child.json()["user_id"] == ada
        narrower = http.post("/v1/keys", json={"alias": "ada-narrow", "models": ["campus/fake-*"]})
        assert narrower.status_code == 201
    assert chat(gateway, child.json()["key"])


def test_openapi_document_lists_the_management_routes(gateway) -> None:
    with gateway.client(None) as http:
        document = http.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/v1/providers",
        "/v1/providers/{provider_id}",
        "/v1/providers/{provider_id}/test",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/users",
        "/auth/creds",
        "/auth/rotate",
        "/admin/users",
    ):
        assert path in paths, path
    assert "KeyCreate" in str(paths["/v1/keys"]["post"]["requestBody"])
    schemas = document["components"]["schemas"]
    assert schemas["KeyCreate"]["required"] == ["alias"]


def test_openapi_document_says_400_and_describes_every_body(gateway) -> None:
    with gateway.client(None) as http:
        document = http.get("/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    error_ref = {"$ref": "#/components/schemas/Error"}
    anthropic_error_ref = {"$ref": "#/components/schemas/AnthropicError"}  # the Messages API's own shape
    assert "422" not in str(document) and "HTTPValidationError" not in schemas
    for path, item in paths.items():
        for method, operation in item.items():
            if "requestBody" in operation:
                bad = operation["responses"]["400"]
                expected = anthropic_error_ref if "/v1/messages" in path else error_ref
                assert bad["content"]["application/json"]["schema"] == expected, (method, path)
    assert schemas["Error"]["properties"]["error"]["required"] == ["message", "type"]

    def body_schema(path: str, method: str) -> dict[str, object]:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body_schema("/v1/providers", "post") == {"$ref": "#/components/schemas/ProviderCreate"}
    assert body_schema("/v1/providers/{provider_id}", "put") == {"$ref": "#/components/schemas/ProviderUpdate"}
    assert body_schema("/auth/creds", "put") == {"$ref": "#/components/schemas/CredentialsUpdate"}
    create, update = schemas["ProviderCreate"], schemas["ProviderUpdate"]
    for name in ("id", "type", "base_url", "api_key", "api_keys", "headers", "weight", "priority", "timeouts"):
        assert name in create["properties"] and name in update["properties"], name
    assert {"provider_type", "api_base"} <= set(create["properties"])
    assert create["required"] == ["id"] and "required" not in update
    assert create["properties"]["timeouts"]["$ref"] == "#/components/schemas/Timeouts"
    assert "Timeouts" in schemas
    assert "providers" in schemas["CredentialsUpdate"]["properties"] and "CredentialSection" in schemas
    assert schemas["ProbeRequest"]["properties"]["model"]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An anygate key (`sk-ag-...`).",
    }
    assert document["security"] == [{"bearer": []}, {"x-api-key": []}, {"api-key": []}]
    assert paths["/health"]["get"]["security"] == [] and paths["/health/ready"]["get"]["security"] == []
    assert "security" not in paths["/v1/keys"]["post"]  # the document-wide bearer


def test_the_admin_key_is_still_the_configured_one(gateway) -> None:
    with gateway.client(ADMIN_KEY) as http:
        assert http.get("/v1/users").status_code == 200
    with gateway.client("sk-ag-wrong") as http:
        assert http.get("/v1/users").status_code == 401
