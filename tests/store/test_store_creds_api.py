"""Bring your own key (seed 004): GET/PUT /auth/creds, and callers' keys used upstream.

Ported from seed 004's cases: masking, merging with null deletes, empty sections removed, token
extraction from Authorization / x-api-key / api-key; plus the validation of provider ids it lacked.
"""

from __future__ import annotations

import openai
import pytest

from anygate.api.routes_creds import mask_secret, owner_of
from anygate.auth import Principal, extract_token, session_principal
from anygate.caller_keys import CallerKeys
from tests.store.conftest import ADMIN_KEY, upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]
LONG = "sk-ant-api03-abcdefghijklmnop"


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (LONG, "sk-ant-a...mnop"),
        ("a" * 16, "***"),
        ("short", "***"),
        ("b" * 17, "bbbbbbbb...bbbb"),
    ],
)
def test_masking_rule(key: str, shown: str) -> None:
    assert mask_secret(key) == shown


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer sk-ag-1")], "sk-ag-1"),
        ([(b"authorization", b"bearer   sk-ag-2 ")], "sk-ag-2"),
        ([(b"x-api-key", b"sk-ag-3")], "sk-ag-3"),
        ([(b"api-key", b"sk-ag-4")], "sk-ag-4"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
)
def test_token_extraction(headers: list[tuple[bytes, bytes]], token: str | None) -> None:
    assert extract_token(headers) == token


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream())


@pytest.fixture
def gateway(upstream, make_settings, serve):  # type: ignore[no-untyped-def]
    providers = [
        upstream_provider("keyless", upstream.base_url, models=["fake-model"], max_retries=0),
        upstream_provider("owned", upstream.base_url, api_key="sk-operator-key-123", models=["fake-model"]),
    ]
    return serve(make_settings(providers=providers))


def user_key(gateway, alias: str = "student") -> str:  # type: ignore[no-untyped-def]
    with gateway.client() as http:
        return str(http.post("/v1/keys", json={"alias": alias}).json()["key"])


def test_put_merges_deletes_with_null_and_answers_masked(gateway) -> None:
    key = user_key(gateway)
    with gateway.client(key) as http:
        assert http.get("/auth/creds").json() == {}
        put = http.put("/auth/creds", json={"providers": {"keyless": {"apiKey": LONG}}})
        assert put.status_code == 200, put.text
        assert put.json() == {"providers": {"keyless": {"apiKey": "sk-ant-a...mnop"}}}
        assert LONG not in put.text
        both = http.put("/auth/creds", json={"providers": {"owned": {"apiKey": "short-key"}}}).json()
        assert both == {"providers": {"keyless": {"apiKey": "sk-ant-a...mnop"}, "owned": {"apiKey": "***"}}}
        # the masked value sent back unchanged keeps the key
        http.put("/auth/creds", json={"providers": {"keyless": {"apiKey": "sk-ant-a...mnop"}}})
        assert http.get("/auth/creds").json()["providers"]["keyless"] == {"apiKey": "sk-ant-a...mnop"}
        assert http.put("/auth/creds", json={}).json() == both  # absent keeps
        removed_field = http.put("/auth/creds", json={"providers": {"owned": {"apiKey": None}}}).json()
        assert removed_field == {"providers": {"keyless": {"apiKey": "sk-ant-a...mnop"}}}  # empty section gone
        assert http.put("/auth/creds", json={"providers": {"keyless": None}}).json() == {}
        http.put("/auth/creds", json={"providers": {"keyless": {"apiKey": LONG}}})
        assert http.put("/auth/creds", json={"providers": None}).json() == {}
        assert http.get("/auth/creds").json() == {}


BAD_BODIES = [
    ({"providers": {"nope": {"apiKey": "x" * 20}}}, "providers.nope"),
    ({"providers": {"keyless": {"apiKey": 5}}}, "providers.keyless.apiKey"),
    ({"providers": {"keyless": {"token": "x"}}}, "providers.keyless.token"),
    ({"providers": {"keyless": "x"}}, "providers.keyless"),
    ({"providers": ["keyless"]}, "providers"),
    ({"anthropic": {}}, "anthropic"),
]


def test_bad_credentials_are_400_and_change_nothing(gateway) -> None:
    key = user_key(gateway)
    with gateway.client(key) as http:
        http.put("/auth/creds", json={"providers": {"keyless": {"apiKey": LONG}}})
        for body, param in BAD_BODIES:
            response = http.put("/auth/creds", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == param
            assert http.get("/auth/creds").json() == {"providers": {"keyless": {"apiKey": "sk-ant-a...mnop"}}}


def test_callers_key_is_used_upstream_and_missing_key_is_401(open_sdk, gateway, upstream) -> None:
    alice, bob = user_key(gateway, "alice"), user_key(gateway, "bob")
    client = gateway.sdk(bob)
    with pytest.raises(openai.AuthenticationError, match="No API key configured for keyless"):
        client.chat.completions.create(model="keyless/fake-model", messages=HI)
    with gateway.client(bob) as http:
        proxied = http.post("/proxy/keyless/v1/chat/completions", json={"model": "fake-model", "messages": HI})
        assert proxied.status_code == 401
        assert proxied.json()["error"]["message"] == "No API key configured for keyless"
    with gateway.client(alice) as http:
        http.put("/auth/creds", json={"providers": {"keyless": {"apiKey": "sk-alice-own-key-0001"}}})
        http.put("/auth/creds", json={"providers": {"owned": {"apiKey": "sk-alice-own-key-0002"}}})
        assert http.post("/proxy/keyless/v1/chat/completions", json={"model": "fake-model", "messages": HI}).is_success
    seen = upstream.requests_to("/v1/chat/completions")[-1]
    assert seen.headers["authorization"] == "Bearer sk-alice-own-key-0001"
    assert alice not in str(seen.headers)
    alice_client = gateway.sdk(alice)
    alice_client.chat.completions.create(model="owned/fake-model", messages=HI)
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer sk-alice-own-key-0002"
    client.chat.completions.create(model="owned/fake-model", messages=HI)  # bob: the operator's key
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer sk-operator-key-123"


def test_a_keys_credentials_are_its_own_and_its_childrens_never_its_users_other_keys(gateway, upstream) -> None:
    """Several people may share one user record (a course): one of them must not choose where the others'
    prompts go, or move their spend off the user's budget with a provider key of their own."""
    with gateway.client() as http:
        user = http.post("/v1/users", json={"name": "comp318"}).json()["id"]
        alice = http.post("/v1/keys", json={"alias": "alice", "user_id": user}).json()["key"]
        bob = http.post("/v1/keys", json={"alias": "bob", "user_id": user}).json()["key"]
    with gateway.client(alice) as http:
        assert http.put("/auth/creds", json={"providers": {"owned": {"apiKey": LONG}}}).is_success
        child = http.post("/v1/keys", json={"alias": "alice-laptop"}).json()["key"]
    with gateway.client(bob) as http:
        assert http.get("/auth/creds").json() == {}
    for key, sent in ((bob, "sk-operator-key-123"), (alice, LONG), (child, LONG)):
        gateway.sdk(key).chat.completions.create(model="owned/fake-model", messages=HI)
        assert upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == f"Bearer {sent}"
    with gateway.client(user_key(gateway, "stranger")) as http:
        assert http.get("/auth/creds").json() == {}
    with gateway.client(ADMIN_KEY) as http:
        assert http.get("/auth/creds").json() == {}


def test_a_person_signed_in_as_a_user_sets_what_every_key_of_the_user_falls_back_on() -> None:
    user_keys = CallerKeys()
    person = session_principal("usr_1", "ada", (), None)
    key = Principal(key_id="key_a", is_admin=False, user_id="usr_1")
    child = Principal(key_id="key_c", is_admin=False, user_id="usr_1", ancestors=(key,))
    assert owner_of(person) == "usr_1" and owner_of(key) == "key_a"
    user_keys.replace({("usr_1", "p"): "sk-users-own-key-1", ("key_a", "p"): "sk-keys-own-key-1"}, frozenset())
    assert user_keys.key_for(person, "p") == "sk-users-own-key-1"
    assert user_keys.key_for(key, "p") == "sk-keys-own-key-1"  # its own first
    assert user_keys.key_for(child, "p") == "sk-keys-own-key-1"  # then its maker's
    other = Principal(key_id="key_b", is_admin=False, user_id="usr_1")
    assert user_keys.key_for(other, "p") == "sk-users-own-key-1"  # then the user's, never a sibling's


def test_revoking_a_key_drops_its_own_provider_keys(gateway) -> None:
    with gateway.client() as http:
        made = http.post("/v1/keys", json={"alias": "leaving"}).json()
    with gateway.client(made["key"]) as http:
        assert http.put("/auth/creds", json={"providers": {"owned": {"apiKey": LONG}}}).is_success
    assert (made["id"], "owned") in gateway.app.state.caller_keys.as_dict()
    with gateway.client() as http:
        assert http.delete(f"/v1/keys/{made['id']}").status_code == 200
    assert (made["id"], "owned") not in gateway.app.state.caller_keys.as_dict()
