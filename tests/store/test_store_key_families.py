"""Keys made by keys, through the API as a key holder who tries to get more than it was given: every
child is bound by the keys above it (revoked and expired with them), only ever narrows itself, and an
allowlist means provider and model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest

from tests.store.conftest import upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model", "other-model", "vendor/model-x")))


@pytest.fixture
def gateway(upstream, make_settings, serve):  # type: ignore[no-untyped-def]
    providers = [
        upstream_provider("campus", upstream.base_url, api_key="sk-upstream-key-xyz"),
        upstream_provider("vendor", upstream.base_url, api_key="sk-upstream-key-xyz"),
        upstream_provider("other", upstream.base_url, api_key="sk-upstream-key-xyz"),
    ]
    return serve(
        make_settings(
            providers=providers, prices={f"{p}/*": {"input": 0, "output": 0} for p in ("campus", "vendor", "other")}
        )
    )


def chat(gateway, key: str, model: str = "campus/fake-model") -> str:  # type: ignore[no-untyped-def]
    with gateway.sdk(key) as client:
        return client.chat.completions.create(model=model, messages=HI).choices[0].message.content or ""


def made(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def refused(response: Any, param: str) -> str:
    """The 403 ``too_many_rights`` naming ``param``; its message."""
    assert response.status_code == 403, (param, response.text)
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("too_many_rights", param, "permission_error"), error
    assert param in error["message"]
    return error["message"]  # type: ignore[no-any-return]


def family(gateway, **parent_fields: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """An admin-made parent, the child it makes, and the grandchild the child makes."""
    with gateway.client() as admin:
        parent = made(admin.post("/v1/keys", json={"alias": "parent", **parent_fields}))
    with gateway.client(parent["key"]) as own:
        child = made(own.post("/v1/keys", json={"alias": "child"}))
    with gateway.client(child["key"]) as own:
        grandchild = made(own.post("/v1/keys", json={"alias": "grandchild"}))
    return parent, child, grandchild


# ---------------------------------------------------------------------------------------------- revoking, expiring


def test_revoking_a_key_ends_its_children_and_grandchildren(gateway) -> None:
    parent, child, grandchild = family(gateway)
    with gateway.client(child["key"]) as own:
        rotated = own.post("/auth/rotate").json()  # a new secret is the same key: bound as before
    for key in (parent["key"], child["key"], rotated["key"], grandchild["key"]):
        assert chat(gateway, key)
    with gateway.client() as admin:
        assert admin.delete(f"/v1/keys/{parent['id']}").json()["status"] == "revoked"
        views = {k["id"]: k for k in admin.get("/v1/keys").json()["data"]}
    for key in (parent["key"], child["key"], rotated["key"], grandchild["key"]):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, key)
    assert {views[k["id"]]["status"] for k in (parent, child, grandchild)} == {"revoked"}
    assert views[grandchild["id"]]["revoked_at"] is not None  # in the store, not only in the key ring


def test_a_key_whose_parent_expired_stops_working(gateway) -> None:
    parent, child, grandchild = family(gateway)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with gateway.client() as admin:
        assert admin.patch(f"/v1/keys/{parent['id']}", json={"expires_at": past}).status_code == 200
        views = {k["id"]: k for k in admin.get("/v1/keys").json()["data"]}
    for key in (child["key"], grandchild["key"]):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, key)
    assert views[grandchild["id"]]["status"] == "expired" and views[grandchild["id"]]["expires_at"] is None


def test_every_key_view_shows_who_made_the_key(gateway) -> None:
    parent, child, grandchild = family(gateway)
    assert (parent["created_by"], child["created_by"], grandchild["created_by"]) == ("admin", parent["id"], child["id"])
    with gateway.client() as admin:
        listed = {k["id"]: k["created_by"] for k in admin.get("/v1/keys").json()["data"]}
        assert admin.get(f"/v1/keys/{grandchild['id']}").json()["created_by"] == child["id"]
    assert listed == {parent["id"]: "admin", child["id"]: parent["id"], grandchild["id"]: child["id"]}
    with gateway.client(child["key"]) as own:
        assert own.get(f"/v1/keys/{grandchild['id']}").json()["created_by"] == child["id"]


def test_a_key_manages_only_itself_and_its_descendants_never_its_creator(gateway) -> None:
    with gateway.client() as admin:
        user = admin.post("/v1/users", json={"name": "course"}).json()["id"]
        parent = made(admin.post("/v1/keys", json={"alias": "teacher", "user_id": user}))
        sibling = made(admin.post("/v1/keys", json={"alias": "ta", "user_id": user}))
    with gateway.client(parent["key"]) as own:
        child = made(own.post("/v1/keys", json={"alias": "student"}))
    assert child["user_id"] == user
    with gateway.client(child["key"]) as student:
        grandchild = made(student.post("/v1/keys", json={"alias": "student-ci"}))
        for other in (parent, sibling):
            assert student.get(f"/v1/keys/{other['id']}").status_code == 404
            assert student.patch(f"/v1/keys/{other['id']}", json={"models": []}).status_code == 404
            assert student.delete(f"/v1/keys/{other['id']}").status_code == 404
    with gateway.client(parent["key"]) as teacher:
        assert teacher.get(f"/v1/keys/{grandchild['id']}").status_code == 200
        assert teacher.delete(f"/v1/keys/{grandchild['id']}").json()["status"] == "revoked"
    assert chat(gateway, parent["key"]) and chat(gateway, sibling["key"])


def test_deleting_a_user_ends_the_keys_made_from_its_keys_elsewhere(gateway) -> None:
    with gateway.client() as admin:
        ada = admin.post("/v1/users", json={"name": "ada"}).json()["id"]
        bob = admin.post("/v1/users", json={"name": "bob"}).json()["id"]
        parent = made(admin.post("/v1/keys", json={"alias": "ada", "user_id": ada}))
        with gateway.client(parent["key"]) as own:
            child = made(own.post("/v1/keys", json={"alias": "ada-child"}))
        assert admin.patch(f"/v1/keys/{child['id']}", json={"user_id": bob}).status_code == 200  # admins may
        assert chat(gateway, child["key"])
        assert admin.delete(f"/v1/users/{ada}").status_code == 200
        assert admin.get(f"/v1/keys/{child['id']}").json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, child["key"])


# ---------------------------------------------------------------------------------------------- narrowing only

BOUND = {
    "models": ["campus/*"],
    "providers": ["campus"],
    "budget": {"tokens": 1000, "usd": 5.0, "period": "weekly", "mode": "hard"},
    "limits": {"rpm": 60, "tpm": 10000, "concurrency": 4},
}
LOOSER = [
    ({"budget": {"tokens": 1000, "usd": 5.0, "period": "weekly", "mode": "soft"}}, "budget.mode"),
    ({"budget": {"tokens": 1000, "usd": 5.0, "period": "daily", "mode": "hard"}}, "budget.period"),
    ({"budget": {"tokens": 1000, "usd": 5.0, "period": "monthly", "mode": "hard"}}, "budget.period"),
    ({"budget": {"tokens": 1001, "usd": 5.0, "period": "weekly"}}, "budget.tokens"),
    ({"budget": {"usd": 5.0, "period": "weekly"}}, "budget.tokens"),
    ({"budget": {"tokens": 1000, "period": "weekly"}}, "budget.usd"),
    ({"budget": None}, "budget"),
    ({"limits": {"rpm": 61, "tpm": 10000, "concurrency": 4}}, "limits.rpm"),
    ({"limits": {"rpm": 60, "tpm": 10000}}, "limits.concurrency"),
    ({"limits": None}, "limits"),
    ({"models": None}, "models"),
    ({"models": ["campus/*", "other/*"]}, "models"),
    ({"models": ["*"]}, "models"),
    ({"providers": None}, "providers"),
    ({"providers": ["campus", "other"]}, "providers"),
    ({"expires_at": None}, "expires_at"),
    ({"expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
    ({"user_id": None}, "user_id"),
    ({"role": "admin"}, "role"),
]


@pytest.mark.parametrize(("change", "param"), LOOSER, ids=[f"{p}-{i}" for i, (_, p) in enumerate(LOOSER)])
def test_a_key_cannot_patch_itself_looser_on_any_field(gateway, change: dict[str, Any], param: str) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with gateway.client() as admin:
        user = admin.post("/v1/users", json={"name": "course"}).json()["id"]
        key = made(admin.post("/v1/keys", json={"alias": "k", "user_id": user, "expires_at": expires, **BOUND}))
    with gateway.client(key["key"]) as own:
        refused(own.patch(f"/v1/keys/{key['id']}", json=change), param)
        unchanged = own.get(f"/v1/keys/{key['id']}").json()
        if None not in change.values():  # null in a new key's body means "as the calling key's"
            refused(own.post("/v1/keys", json={"alias": "child", **BOUND, "expires_at": expires, **change}), param)
    assert {name: unchanged[name] for name in BOUND} == BOUND and unchanged["user_id"] == user


def test_a_key_may_narrow_itself_and_then_not_widen_back(gateway) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    with gateway.client() as admin:
        key = made(admin.post("/v1/keys", json={"alias": "k", "expires_at": expires.isoformat(), **BOUND}))
    narrower = {
        "models": ["campus/fake-*"],
        "providers": ["campus"],
        "budget": {"tokens": 500, "usd": 1.0, "period": "none", "mode": "hard"},
        "limits": {"rpm": 10, "tpm": 1000, "concurrency": 1},
        "expires_at": (expires - timedelta(hours=1)).isoformat(),
    }
    with gateway.client(key["key"]) as own:
        answer = own.patch(f"/v1/keys/{key['id']}", json=narrower)
        assert answer.status_code == 200, answer.text
        assert (
            own.patch(f"/v1/keys/{key['id']}", json={"budget": {**narrower["budget"], "tokens": 600}}).status_code
            == 403
        )
    assert chat(gateway, key["key"])


def test_a_parent_cannot_widen_a_child_past_the_childs_current_rights(gateway) -> None:
    with gateway.client() as admin:
        parent = made(admin.post("/v1/keys", json={"alias": "parent", **BOUND}))
    with gateway.client(parent["key"]) as own:
        child = made(
            own.post("/v1/keys", json={"alias": "child", "budget": {"tokens": 10, "usd": 1.0, "period": "weekly"}})
        )
        widened = own.patch(
            f"/v1/keys/{child['id']}", json={"budget": {"tokens": 1000, "usd": 5.0, "period": "weekly"}}
        )
    assert "key's current" in refused(widened, "budget.tokens")


# ---------------------------------------------------------------------------------------------- globs


def test_a_child_glob_that_is_not_provably_inside_the_parents_is_refused(gateway) -> None:
    with gateway.client() as admin:
        parent = made(admin.post("/v1/keys", json={"alias": "parent", "models": ["campus/[!o]*"]}))
    with gateway.client(parent["key"]) as own:
        message = refused(own.post("/v1/keys", json={"alias": "trick", "models": ["campus/[o]*"]}), "models")
        assert "literal" in message and "campus/[o]*" in message
        refused(own.patch(f"/v1/keys/{parent['id']}", json={"models": ["campus/[o]*"]}), "models")
        literal = made(own.post("/v1/keys", json={"alias": "one", "models": ["campus/fake-model"]}))
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, parent["key"], "campus/other-model")
    assert chat(gateway, literal["key"])


def test_a_literal_prefix_glob_may_narrow_a_shorter_one(gateway) -> None:
    with gateway.client() as admin:
        parent = made(admin.post("/v1/keys", json={"alias": "parent", "models": ["campus/f*"]}))
    with gateway.client(parent["key"]) as own:
        child = made(own.post("/v1/keys", json={"alias": "child", "models": ["campus/fake-*"]}))
        refused(own.post("/v1/keys", json={"alias": "wider", "models": ["campus/*"]}), "models")
    assert chat(gateway, child["key"])


# ---------------------------------------------------------------------------------------------- providers


def test_a_model_glob_never_matches_across_providers(gateway) -> None:
    """``vendor/*`` names provider ``vendor``: not ``other``'s upstream model ``vendor/model-x``."""
    with gateway.client() as admin:
        key = made(admin.post("/v1/keys", json={"alias": "vendor-only", "models": ["vendor/*"]}))["key"]
    assert chat(gateway, key, "vendor/vendor/model-x")
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, key, "other/vendor/model-x")
    with gateway.client(key) as own:
        listed = {m["id"] for m in own.get("/v1/models").json()["data"]}
        assert own.get("/v1/models/other/vendor/model-x").status_code in (403, 404)
        proxied = own.post(
            "/proxy/other/v1/chat/completions", json={"model": "vendor/model-x", "messages": HI, "max_tokens": 5}
        )
    assert "vendor/fake-model" in listed and not any(m.startswith("other/") for m in listed)
    assert proxied.status_code == 403 and proxied.json()["error"]["code"] == "model_not_allowed"


def test_a_child_is_bound_by_its_parents_allowlist_as_it_is_now(gateway) -> None:
    """Narrowing a key narrows the keys made from it, whatever their own fields say."""
    parent, child, grandchild = family(gateway, models=["campus/*"])
    assert chat(gateway, grandchild["key"])
    with gateway.client() as admin:
        assert admin.patch(f"/v1/keys/{parent['id']}", json={"models": ["campus/other-model"]}).status_code == 200
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, grandchild["key"])
    assert chat(gateway, grandchild["key"], "campus/other-model")
    with gateway.client(grandchild["key"]) as own:
        assert {m["id"] for m in own.get("/v1/models").json()["data"]} == {"campus/other-model"}


def test_keys_an_admin_makes_stand_on_their_own(gateway) -> None:
    """Admins are trusted: revoking an admin-role key leaves the keys it made working."""
    with gateway.client() as admin:
        operator = made(admin.post("/v1/keys", json={"alias": "operator", "role": "admin"}))
    with gateway.client(operator["key"]) as own:
        student = made(own.post("/v1/keys", json={"alias": "student", "budget": {"tokens": 10**6}}))
        other_admin = made(own.post("/v1/keys", json={"alias": "second", "role": "admin"}))
    assert student["created_by"] == operator["id"]
    with gateway.client() as admin:
        assert admin.delete(f"/v1/keys/{operator['id']}").json()["status"] == "revoked"
        assert admin.get(f"/v1/keys/{student['id']}").json()["status"] == "active"
    assert chat(gateway, student["key"]) and chat(gateway, other_admin["key"])


def test_a_chain_of_keys_is_at_most_max_depth_below_an_admin_made_key(gateway) -> None:
    from anygate.store.families import MAX_DEPTH

    with gateway.client() as admin:
        key = made(admin.post("/v1/keys", json={"alias": "root"}))
    for depth in range(MAX_DEPTH):
        with gateway.client(key["key"]) as own:
            key = made(own.post("/v1/keys", json={"alias": f"depth-{depth + 1}"}))
    with gateway.client(key["key"]) as own:
        deeper = own.post("/v1/keys", json={"alias": "too-deep"})
    assert deeper.status_code == 403 and deeper.json()["error"]["code"] == "too_many_rights"
    assert chat(gateway, key["key"])
