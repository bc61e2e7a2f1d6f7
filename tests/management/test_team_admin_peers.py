"""A team admin manages its team's students: users whose keys are all plain user keys, and those keys. A
user of the team who holds an admin or a team admin key (a professor, another teaching assistant) is not
its to change, delete or make keys for, and neither are such keys: 403 ``team_admin_scope``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.inprocess import InProcessGateway


@pytest.fixture
def team(gw: InProcessGateway) -> dict[str, dict[str, Any]]:
    gw.created("/v1/teams", {"id": "comp318", "name": "COMP318"})
    ta_user = gw.created("/v1/users", {"name": "ta", "team_id": "comp318"})
    peer_user = gw.created("/v1/users", {"name": "ta2", "team_id": "comp318"})
    prof_user = gw.created("/v1/users", {"name": "prof", "team_id": "comp318"})
    student_user = gw.created("/v1/users", {"name": "student", "team_id": "comp318"})
    return {
        "ta": gw.created("/v1/keys", {"alias": "ta", "user_id": ta_user["id"], "role": "team_admin"}),
        "peer": gw.created("/v1/keys", {"alias": "ta2", "user_id": peer_user["id"], "role": "team_admin"}),
        "prof": gw.created("/v1/keys", {"alias": "prof", "user_id": prof_user["id"], "role": "admin"}),
        "student": gw.created("/v1/keys", {"alias": "student", "user_id": student_user["id"]}),
        "peer_user": peer_user,
        "prof_user": prof_user,
        "student_user": student_user,
    }


CHANGES = [
    ("PATCH", "/v1/keys/{peer[id]}", {"budgets": [{"tokens": 1, "window": "daily"}]}),
    ("DELETE", "/v1/keys/{peer[id]}", None),
    ("PATCH", "/v1/keys/{prof[id]}", {"role": "user"}),
    ("DELETE", "/v1/keys/{prof[id]}", None),
    ("PATCH", "/v1/users/{peer_user[id]}", {"budgets": [{"tokens": 1, "window": "daily"}]}),
    ("DELETE", "/v1/users/{prof_user[id]}", None),
    ("DELETE", "/v1/users/{peer_user[id]}", None),
    ("POST", "/v1/keys", {"alias": "as-prof", "user_id": "{prof_user[id]}"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_a_team_admin_cannot_change_an_admin_or_another_team_admin(
    gw: InProcessGateway, team: dict[str, dict[str, Any]], method: str, path: str, body: dict[str, Any] | None
) -> None:
    if body is not None and "user_id" in body:
        body = {**body, "user_id": body["user_id"].format(**team)}
    with gw.client(team["ta"]["key"]) as http:
        answer = http.request(method, path.format(**team), json=body)
    assert answer.status_code in (403, 404), answer.text
    with gw.client() as http:
        for name in ("peer", "prof"):
            view = http.get(f"/v1/keys/{team[name]['id']}").json()
            assert view["status"] == "active" and view["budgets"] == [] and view["role"] != "user"
        assert http.get(f"/v1/users/{team['peer_user']['id']}").json()["budgets"] == []


def test_a_team_admin_still_manages_its_students(gw: InProcessGateway, team: dict[str, dict[str, Any]]) -> None:
    student, student_user = team["student"], team["student_user"]
    with gw.client(team["ta"]["key"]) as http:
        budgets = [{"tokens": 100, "window": "daily"}]
        assert http.patch(f"/v1/keys/{student['id']}", json={"budgets": budgets}).status_code == 200
        assert http.patch(f"/v1/users/{student_user['id']}", json={"budgets": budgets}).status_code == 200
        assert http.post("/v1/keys", json={"alias": "s2", "user_id": student_user["id"]}).status_code == 201
        assert http.delete(f"/v1/keys/{student['id']}").status_code == 200
        assert http.delete(f"/v1/users/{student_user['id']}").status_code == 200
