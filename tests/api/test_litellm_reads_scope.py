"""``/user/info`` and ``/team/info`` list key rows (alias, spend, budget, allowlists): a key holder sees the
rows of the keys it manages (itself and the keys made from it), as ``/key/info?key=`` answers, and never
those of another key of its user or its team; admins and the team's admin see them all."""

from __future__ import annotations

from typing import Any

from tests.support.inprocess import InProcessGateway


def rows(gw: InProcessGateway, key: str | None, path: str) -> set[str]:
    """The keys an answer lists a row of: by alias (``/user/info``), by id (``/team/info``)."""
    with gw.client(key) if key else gw.client() as http:
        answer = http.get(path)
    assert answer.status_code == 200, answer.text
    return {row.get("token") or row["key_alias"] for row in answer.json()["keys"]}


def test_a_key_reads_only_the_rows_of_the_keys_it_manages(gw: InProcessGateway) -> None:
    # A course as one user with a key per student (docs/budgets-and-quotas.md's first worked example).
    course = gw.created("/v1/users", {"name": "comp318"})
    alice = gw.created("/v1/keys", {"alias": "comp318-alice", "user_id": course["id"]})
    gw.created("/v1/keys", {"alias": "comp318-bob", "user_id": course["id"]})
    gw.created("/v1/keys", {"alias": "alice-laptop"}, key=alice["key"])
    assert rows(gw, alice["key"], "/user/info") == {"comp318-alice", "alice-laptop"}
    assert rows(gw, None, f"/user/info?user_id={course['id']}") == {"comp318-alice", "comp318-bob", "alice-laptop"}


def course(gw: InProcessGateway) -> dict[str, dict[str, Any]]:
    """Team comp318: users carol, dave and ta, each with a key (ta's the team admin's); by name, the users
    (``<name>_user``) and the keys (``<name>``) as they were made."""
    gw.created("/v1/teams", {"id": "comp318", "name": "COMP318"})
    people: dict[str, dict[str, Any]] = {}
    for name in ("carol", "dave", "ta"):
        user = people[f"{name}_user"] = gw.created("/v1/users", {"name": name, "team_id": "comp318"})
        role = {"role": "team_admin"} if name == "ta" else {}
        people[name] = gw.created("/v1/keys", {"alias": name, "user_id": user["id"], **role})
    return people


def test_a_team_member_reads_only_its_own_keys_rows_of_the_team(gw: InProcessGateway) -> None:
    people = course(gw)
    carol, dave, ta = people["carol"], people["dave"], people["ta"]
    assert rows(gw, carol["key"], "/team/info") == {carol["id"]}
    assert rows(gw, ta["key"], "/team/info") == {carol["id"], dave["id"], ta["id"]}
    assert rows(gw, None, "/team/info?team_id=comp318") == {carol["id"], dave["id"], ta["id"]}


def members(gw: InProcessGateway, key: str | None) -> tuple[set[str], set[str]]:
    """The user ids ``/team/info`` names: in ``members_with_roles`` and in ``team_memberships``."""
    with gw.client(key) if key else gw.client() as http:
        answer = http.get("/team/info?team_id=comp318")
    assert answer.status_code == 200, answer.text
    info = answer.json()
    listed = {member["user_id"] for member in info["team_info"]["members_with_roles"]}
    return listed, {membership["user_id"] for membership in info["team_memberships"]}


def test_a_team_member_learns_no_other_members_id(gw: InProcessGateway) -> None:
    people = course(gw)
    carol_id = people["carol_user"]["id"]
    everyone = {carol_id, people["dave_user"]["id"], people["ta_user"]["id"]}
    assert members(gw, people["carol"]["key"]) == ({carol_id}, {carol_id})
    assert members(gw, people["ta"]["key"]) == (everyone, everyone)
    assert members(gw, None) == (everyone, everyone)
