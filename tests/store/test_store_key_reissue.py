"""Re-issuing keys per user and per team: the old keys stop at once, the new ones work with the same
fields, the user's and team's budgets keep counting what was spent, every secret is in the answer only,
the change is audited, and a team admin re-issues its own team only."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.store.conftest import campus_gateway
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]
KEY_FIELDS = ("alias", "user_id", "role", "models", "providers", "budgets", "limits", "expires_at", "status")


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model",)))


@pytest.fixture
def gateway(upstream, make_settings, serve):  # type: ignore[no-untyped-def]
    return campus_gateway(upstream.base_url, make_settings, serve)


def chat(gateway, key: str) -> str:  # type: ignore[no-untyped-def]
    with gateway.sdk(key) as client:
        return client.chat.completions.create(model="campus/fake-model", messages=HI).choices[0].message.content or ""


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def enrol(admin: Any, team: str, name: str, **key_fields: Any) -> tuple[str, dict[str, Any]]:
    """A user in ``team`` with a user budget of 3 requests a day, and a key for it."""
    user = ok(
        admin.post("/v1/users", json={"name": name, "team_id": team, "budgets": [{"requests": 3, "window": "daily"}]}),
        201,
    )
    key = ok(admin.post("/v1/keys", json={"alias": f"{name}-laptop", "user_id": user["id"], **key_fields}), 201)
    return user["id"], key


def test_a_users_keys_are_reissued_with_the_same_fields_and_the_old_ones_stop(gateway) -> None:
    fields = {
        "models": ["campus/*"],
        "providers": ["campus"],
        "budgets": [{"tokens": 100000, "window": "daily"}, {"usd": 5, "window": "monthly", "mode": "soft"}],
        "limits": {"rpm": 60, "concurrency": 2},
        "expires_at": "2099-06-30T00:00:00Z",
    }
    with gateway.client() as admin:
        team = ok(
            admin.post("/v1/teams", json={"id": "cs", "name": "CS", "budgets": [{"requests": 100, "window": "daily"}]}),
            201,
        )["id"]
        ada, old = enrol(admin, team, "ada", **fields)
        _, bob_key = enrol(admin, team, "bob")
    with gateway.client(old["key"]) as own:
        child = ok(own.post("/v1/keys", json={"alias": "ci"}), 201)  # made by the old key: revoked with it
    assert chat(gateway, old["key"]) and chat(gateway, old["key"])  # 2 of ada's 3 requests a day

    with gateway.client() as admin:
        answer = ok(admin.post(f"/v1/users/{ada}/keys/reissue"))
        assert answer["reissued"] == 1 and len(answer["data"]) == 1
        row = answer["data"][0]
        assert (row["user_id"], row["name"], row["alias"], row["old_key_id"]) == (ada, "ada", "ada-laptop", old["id"])
        assert row["key"].startswith("sk-ag-") and row["key_id"] != old["id"]
        views = {k["id"]: k for k in ok(admin.get("/v1/keys"))["data"]}
        audit = ok(admin.get(f"/v1/audit?target={ada}"))["data"]
    new = views[row["key_id"]]
    assert {f: new[f] for f in KEY_FIELDS} == {**{f: views[old["id"]][f] for f in KEY_FIELDS}, "status": "active"}
    assert views[old["id"]]["status"] == "revoked" and views[child["id"]]["status"] == "revoked"
    assert views[bob_key["id"]]["status"] == "active"  # another user's key is untouched
    assert audit[0]["action"] == "user.reissue"  # newest first
    assert "sk-ag-" not in str(audit) and audit[0]["after"]["reissued"][0]["key_id"] == row["key_id"]

    for gone in (old["key"], child["key"]):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, gone)
    assert chat(gateway, row["key"])  # the 3rd of ada's requests today...
    with pytest.raises(openai.RateLimitError):  # ...and the user's budget was not reset by the re-issue
        chat(gateway, row["key"])


def test_a_teams_keys_are_reissued_by_its_team_admin_and_no_other_team(gateway) -> None:
    with gateway.client() as admin:
        cs = ok(admin.post("/v1/teams", json={"id": "cs", "name": "CS"}), 201)["id"]
        math = ok(admin.post("/v1/teams", json={"id": "math", "name": "Math"}), 201)["id"]
        boss = ok(admin.post("/v1/users", json={"name": "boss", "team_id": cs}), 201)["id"]
        ta = ok(admin.post("/v1/keys", json={"alias": "ta", "user_id": boss, "role": "team_admin"}), 201)
        ana, ana_key = enrol(admin, cs, "ana")
        cy, cy_key = enrol(admin, cs, "cy", limits={"rpm": 10})
        revoked = ok(admin.post("/v1/keys", json={"alias": "old", "user_id": ana}), 201)
        ok(admin.delete(f"/v1/keys/{revoked['id']}"))
        dan, dan_key = enrol(admin, math, "dan")
    with gateway.client(ta["key"]) as team_admin:
        for path in (f"/v1/teams/{math}/keys/reissue", f"/v1/users/{dan}/keys/reissue"):
            refused = team_admin.post(path)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "team_admin_scope", path
        answer = ok(team_admin.post(f"/v1/teams/{cs}/keys/reissue"))
    assert {r["old_key_id"] for r in answer["data"]} == {ana_key["id"], cy_key["id"]}  # live user keys only
    assert {r["name"] for r in answer["data"]} == {"ana", "cy"}
    assert chat(gateway, ta["key"])  # the team admin's own key stays
    assert chat(gateway, dan_key["key"])  # another team's keys stay
    for row in answer["data"]:
        assert chat(gateway, row["key"])
    for old in (ana_key, cy_key):
        with pytest.raises(openai.AuthenticationError):
            chat(gateway, old["key"])
    with gateway.client() as admin:
        assert (
            ok(admin.get(f"/v1/keys/{[r for r in answer['data'] if r['name'] == 'cy'][0]['key_id']}"))["limits"]["rpm"]
            == 10
        )
        assert admin.post("/v1/users/usr_nobody/keys/reissue").status_code == 404
        assert admin.post("/v1/teams/nobody/keys/reissue").status_code == 404
        again = ok(admin.post(f"/v1/users/{dan}/keys/reissue"))
    assert again["reissued"] == 1
    with gateway.client(again["data"][0]["key"]) as holder:  # a key holder re-issues nothing, not even its own
        for path in (f"/v1/users/{dan}/keys/reissue", f"/v1/teams/{math}/keys/reissue"):
            assert holder.post(path).status_code == 403, path
