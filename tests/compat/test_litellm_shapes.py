"""LiteLLM's own management clients and response models read anygate's ``/key/info``, ``/user/info`` and
``/team/info`` (in LiteLLM's venv, as a subprocess: tests/compat/litellm_reader.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import LITELLM_OFFLINE, Tenancy
from tests.support.gateway import ADMIN_KEY

pytestmark = [pytest.mark.sockets, pytest.mark.timeout(900)]  # the first run may install LiteLLM

READER = Path(__file__).with_name("litellm_reader.py")
COST = (7 * 1000 + 3 * 2000) / 1_000_000


def read_with_litellm(python: Path, tenancy: Tenancy, team_id: str | None = None) -> Any:
    given = {
        "team_id": team_id,
        "base_url": tenancy.gateway.url,
        "admin": ADMIN_KEY,
        "student": tenancy.student,
        "student_id": tenancy.student_id,
        "user_id": tenancy.user_id,
        "other": tenancy.unbudgeted,
    }
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **LITELLM_OFFLINE}
    done = subprocess.run(
        [str(python), str(READER), json.dumps(given)], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_litellm_reads_keys_users_and_teams_with_its_own_clients_and_models(
    litellm_python: Path, tenancy: Tenancy
) -> None:
    tenancy.chat(tenancy.student)
    found = read_with_litellm(litellm_python, tenancy)

    own = found["self"]
    assert own["missing"] == []  # every field of LiteLLM's key row
    assert own["key"] == tenancy.student_id  # the key's id, never its secret
    row = own["row"]
    assert (row["key_alias"], row["user_id"], row["team_id"]) == ("student-1", tenancy.user_id, None)
    assert (row["max_budget"], row["budget_duration"]) == (1.0, "1d")
    assert row["spend"] == pytest.approx(COST) and row["model_spend"] == {"fake-model": pytest.approx(COST)}
    assert (row["tpm_limit"], row["rpm_limit"], row["max_parallel_requests"]) == (100000, 60, 4)
    assert (own["status"], row["blocked"], row["metadata"]) == ("active", False, {})
    assert row["created_at"] is not None and row["last_active"] is not None
    assert row["key_name"].startswith("sk-ag-") and tenancy.student not in json.dumps(found)

    # An admin may ask about any key, by hash or by id; a key about another key is refused.
    assert found["admin_about_student"]["row"] == row
    assert found["admin_about_id"]["row"] == row
    assert found["student_about_other"] == 403
    assert found["student_about_unknown"] == 403  # whether it exists is not told
    assert found["admin_about_unknown"] == 404

    user = found["user"]
    assert user["missing"] == [] and user["user_id"] == tenancy.user_id
    assert (user["user"]["user_alias"], user["user"]["max_budget"], user["user"]["budget_duration"]) == (
        "course-comp318",
        5.0,
        "1mo",
    )
    assert user["user"]["spend"] == pytest.approx(COST)
    assert [k["row"]["key_alias"] for k in user["keys"]] == ["student-1"]
    assert user["teams"] == []
    assert found["user_of_caller"]["user_id"] == tenancy.user_id  # no user_id: the caller's own user
    assert found["other_user"] == 403
    assert found["unknown_user"] == 404

    team = found["team"]
    assert team["status"] == 404
    assert team["body"]["error"]["code"] == "team_not_found" and team["body"]["error"]["param"] == "team_id"


def test_litellm_reads_a_real_team_with_its_own_response_types(litellm_python: Path, tenancy: Tenancy) -> None:
    with tenancy.admin() as admin:
        team = {
            "id": "comp318",
            "name": "COMP318",
            "budgets": [{"usd": 50.0, "window": "monthly"}],
            "limits": {"rpm": 100},
        }
        assert admin.post("/v1/teams", json=team).status_code == 201
        joined = admin.patch(f"/v1/users/{tenancy.user_id}", json={"team_id": "comp318"})
        assert joined.status_code == 200, joined.text
    tenancy.chat(tenancy.student)
    found = read_with_litellm(litellm_python, tenancy, team_id="comp318")

    known = found["team_known"]
    assert known["team_id"] == "comp318"
    row = known["team"]
    assert (row["team_alias"], row["max_budget"], row["budget_duration"], row["rpm_limit"]) == (
        "COMP318",
        50.0,
        "1mo",
        100,
    )
    assert [m["user_id"] for m in row["members_with_roles"]] == [tenancy.user_id]
    assert [m["user_id"] for m in known["memberships"]] == [tenancy.user_id]
    assert [k["row"]["key_alias"] for k in known["keys"]] == ["student-1"]
    assert tenancy.student not in json.dumps(found)
