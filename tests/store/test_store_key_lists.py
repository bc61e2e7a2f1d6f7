"""``GET /v1/keys`` for every caller: an admin lists every key, a team admin its team's, and a key holder
its own key and the keys it made (children, grandchildren), never another's; ``caller`` says who asked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.conftest import campus_gateway
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream(models=("fake-model",)))


@pytest.fixture
def gateway(upstream, make_settings, serve):  # type: ignore[no-untyped-def]
    return campus_gateway(upstream.base_url, make_settings, serve)


def made(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def listed(gateway, key: str | None = None, query: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with gateway.client(key) if key is not None else gateway.client() as http:
        answer = http.get(f"/v1/keys{query}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def ids(answer: dict[str, Any]) -> set[str]:
    return {k["id"] for k in answer["data"]}


def test_a_key_holder_lists_itself_and_the_keys_it_made_and_nothing_else(gateway) -> None:
    with gateway.client() as admin:
        ada = admin.post("/v1/users", json={"name": "ada"}).json()["id"]
        parent = made(admin.post("/v1/keys", json={"alias": "parent", "user_id": ada}))
        sibling = made(admin.post("/v1/keys", json={"alias": "sibling", "user_id": ada}))  # same user, not made by it
        stranger = made(admin.post("/v1/keys", json={"alias": "stranger"}))
    with gateway.client(parent["key"]) as own:
        child = made(own.post("/v1/keys", json={"alias": "child"}))
        revoked = made(own.post("/v1/keys", json={"alias": "revoked"}))
        assert own.delete(f"/v1/keys/{revoked['id']}").status_code == 200
    with gateway.client(child["key"]) as own:
        grandchild = made(own.post("/v1/keys", json={"alias": "grandchild"}))

    mine = listed(gateway, parent["key"])
    assert ids(mine) == {parent["id"], child["id"], revoked["id"], grandchild["id"]}
    assert sibling["id"] not in ids(mine) and stranger["id"] not in ids(mine)
    views = {k["id"]: k for k in mine["data"]}
    assert views[revoked["id"]]["status"] == "revoked" and views[child["id"]]["status"] == "active"
    assert views[grandchild["id"]]["created_by"] == child["id"]
    assert all("key" not in view for view in mine["data"])  # never a secret
    assert mine["caller"] == {"key_id": parent["id"], "role": "user", "user_id": ada, "team_id": None}

    assert ids(listed(gateway, child["key"])) == {child["id"], grandchild["id"]}  # never its creator
    assert ids(listed(gateway, grandchild["key"])) == {grandchild["id"]}
    assert ids(listed(gateway, stranger["key"])) == {stranger["id"]}
    assert ids(listed(gateway, parent["key"], f"?user_id={ada}")) == ids(mine)
    assert ids(listed(gateway, parent["key"], "?user_id=usr_nobody")) == set()


def test_an_admin_lists_every_key_and_says_so(gateway) -> None:
    with gateway.client() as admin:
        first = made(admin.post("/v1/keys", json={"alias": "a"}))
        second = made(admin.post("/v1/keys", json={"alias": "b"}))
    answer = listed(gateway)
    assert ids(answer) == {first["id"], second["id"]}
    assert answer["caller"]["role"] == "admin" and answer["caller"]["key_id"] == "admin"


def test_a_team_admin_lists_its_team_and_its_own_family_only(gateway) -> None:
    with gateway.client() as admin:
        team = admin.post("/v1/teams", json={"id": "cs", "name": "CS"}).json()["id"]
        other = admin.post("/v1/teams", json={"id": "math", "name": "Math"}).json()["id"]
        boss = admin.post("/v1/users", json={"name": "boss", "team_id": team}).json()["id"]
        student = admin.post("/v1/users", json={"name": "s", "team_id": team}).json()["id"]
        outsider = admin.post("/v1/users", json={"name": "o", "team_id": other}).json()["id"]
        ta = made(admin.post("/v1/keys", json={"alias": "ta", "user_id": boss, "role": "team_admin"}))
        theirs = made(admin.post("/v1/keys", json={"alias": "s", "user_id": student}))
        elsewhere = made(admin.post("/v1/keys", json={"alias": "o", "user_id": outsider}))
    answer = listed(gateway, ta["key"])
    assert ids(answer) == {ta["id"], theirs["id"]} and elsewhere["id"] not in ids(answer)
    assert answer["caller"] == {"key_id": ta["id"], "role": "team_admin", "user_id": boss, "team_id": team}
