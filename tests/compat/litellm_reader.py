"""Run by tests/compat/test_litellm_shapes.py with LiteLLM's own Python (its venv), not collected by pytest.

Reads anygate's answers with LiteLLM's management clients and validates them with LiteLLM's own response
models; prints what it found as JSON. Arguments: one JSON object (base_url, the secrets and ids to ask
about).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import requests
from litellm.proxy._types import (
    LiteLLM_UserTable,
    LiteLLM_VerificationToken,
    TeamInfoResponseObject,
    TeamInfoResponseObjectTeamTable,
    UserInfoResponse,
)
from litellm.proxy.client import Client, UsersManagementClient
from litellm.proxy.client.exceptions import NotFoundError
from pydantic import TypeAdapter

# LiteLLM's /key/info removes the hashed token from the row it answers.
KEY_FIELDS = set(LiteLLM_VerificationToken.model_fields) - {"token"}
USER_FIELDS = {name for name, field in LiteLLM_UserTable.model_fields.items() if not field.exclude}


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_row(info: dict[str, Any]) -> dict[str, Any]:
    """A key row as LiteLLM's model reads it, and the fields of that model the row leaves out."""
    row = info["info"]
    parsed = LiteLLM_VerificationToken.model_validate(row)
    answer = {"key": info["key"], "missing": sorted(KEY_FIELDS - set(row)), "row": parsed.model_dump(mode="json")}
    answer["status"] = row.get("status")  # derived by /key/info, not a field of the row's model
    return answer


def user_answer(answer: dict[str, Any]) -> dict[str, Any]:
    parsed = UserInfoResponse.model_validate(answer)
    user = LiteLLM_UserTable.model_validate(parsed.user_info)
    assert isinstance(parsed.user_info, dict)
    return {
        "user_id": parsed.user_id,
        "missing": sorted(USER_FIELDS - set(parsed.user_info)),
        "user": user.model_dump(mode="json"),
        "keys": [key_row({"key": None, "info": row}) for row in parsed.keys],
        "teams": parsed.teams,
    }


def team_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """A ``/team/info`` answer as LiteLLM's response types read it."""
    parsed = TypeAdapter(TeamInfoResponseObject).validate_python(answer)
    team = TeamInfoResponseObjectTeamTable.model_validate(answer["team_info"])
    return {
        "team_id": parsed["team_id"],
        "team": team.model_dump(mode="json"),
        "keys": [key_row({"key": None, "info": row}) for row in parsed["keys"]],
        "memberships": [dict(m) for m in parsed["team_memberships"]],
    }


def status_of(call: Any) -> int:
    try:
        call()
    except requests.HTTPError as exc:
        return int(exc.response.status_code)
    except NotFoundError:
        return 404
    return 200


def main() -> None:
    given = json.loads(sys.argv[1])
    base, admin, student, other = given["base_url"], given["admin"], given["student"], given["other"]
    as_student, as_admin = Client(base, student), Client(base, admin)
    found = {
        # LiteLLM's clients name a key by its SHA-256.
        "self": key_row(as_student.keys.info(sha256(student))),  # type: ignore[arg-type]
        "admin_about_student": key_row(as_admin.keys.info(sha256(student))),  # type: ignore[arg-type]
        "admin_about_id": key_row(as_admin.keys.info(given["student_id"])),  # type: ignore[arg-type]
        "student_about_other": status_of(lambda: as_student.keys.info(sha256(other))),
        "student_about_unknown": status_of(lambda: as_student.keys.info("0" * 64)),
        "admin_about_unknown": status_of(lambda: as_admin.keys.info("0" * 64)),
        "user": user_answer(UsersManagementClient(base, student).get_user(given["user_id"])),
        "user_of_caller": user_answer(UsersManagementClient(base, student).get_user()),
        "other_user": status_of(lambda: UsersManagementClient(base, other).get_user(given["user_id"])),
        "unknown_user": status_of(lambda: UsersManagementClient(base, admin).get_user("usr_nobody")),
    }
    team = requests.get(f"{base}/team/info", params={"team_id": "t1"}, headers={"Authorization": f"Bearer {admin}"})
    found["team"] = {"status": team.status_code, "body": team.json()}
    if given.get("team_id"):
        known = requests.get(
            f"{base}/team/info", params={"team_id": given["team_id"]}, headers={"Authorization": f"Bearer {admin}"}
        )
        known.raise_for_status()
        found["team_known"] = team_answer(known.json())
        own = requests.get(
            f"{base}/team/info", params={"team_id": given["team_id"]}, headers={"Authorization": f"Bearer {student}"}
        )
        found["team_as_member"] = own.status_code
    sys.stdout.write(json.dumps(found) + "\n")


if __name__ == "__main__":
    main()
