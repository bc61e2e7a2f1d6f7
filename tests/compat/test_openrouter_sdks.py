"""OpenRouter's official SDKs (Python ``openrouter``, TypeScript ``@openrouter/sdk``) read anygate's
``/api/v1/key`` and ``/api/v1/credits`` with their own clients and their own response models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openrouter import OpenRouter, errors

from tests.compat.conftest import Tenancy

pytestmark = [
    pytest.mark.sockets,
    # The SDK warns of its own deprecated fields (``rate_limit``, ``is_provisioning_key``) as it reads them.
    pytest.mark.filterwarnings("ignore:.*DEPRECATED.*:DeprecationWarning"),
]

COST = (7 * 1000 + 3 * 2000) / 1_000_000  # one chat request at the test prices
TS_CLIENT = """
import { OpenRouter } from "@openrouter/sdk";
const [apiKey, serverURL] = process.argv.slice(2);
const client = new OpenRouter({ apiKey, serverURL, retryConfig: { strategy: "none" } });
const key = await client.apiKeys.getCurrentKeyMetadata();
const credits = await client.credits.getCredits();
console.log(JSON.stringify({ key, credits }));
"""


def python_sdk(tenancy: Tenancy, key: str) -> OpenRouter:
    return OpenRouter(api_key=key, server_url=f"{tenancy.gateway.url}/api/v1", retry_config=None)


def test_the_python_sdk_reads_the_key_with_every_budget_it_counts_against(tenancy: Tenancy) -> None:
    tenancy.chat(tenancy.student)
    with python_sdk(tenancy, tenancy.student) as client:
        key = client.api_keys.get_current_key_metadata().data
        credits = client.credits.get_credits().data
    assert key.label == "student-1"
    assert (key.usage, key.usage_daily) == (pytest.approx(COST), pytest.approx(COST))
    # The user's monthly $5 (a member's budget, checked first), then the key's own daily $1.
    assert [(b.scope, b.limit_usd, b.reset_interval) for b in key.budgets] == [
        ("member", 5.0, "monthly"),
        ("key_limit", 1.0, "daily"),
    ]
    assert all(b.spend_usd == pytest.approx(COST) and b.include_byok is False for b in key.budgets)
    assert key.effective_budget is not None and key.effective_budget.scope == "key_limit"
    assert key.effective_budget.remaining_usd == pytest.approx(1.0 - COST)
    assert (key.limit, key.limit_remaining, key.limit_reset) == (1.0, pytest.approx(1.0 - COST), "daily")
    assert key.allowed_data_regions == ["global"]
    assert (key.organization_id, key.workspace_id) == (None, None)
    assert key.free_model_daily_requests.used == 0 and key.free_model_daily_requests.limit == -1
    assert (credits.total_credits, credits.total_usage) == (1.0, pytest.approx(COST))


def test_the_python_sdk_reads_a_key_without_budgets(tenancy: Tenancy) -> None:
    with python_sdk(tenancy, tenancy.unbudgeted) as client:
        key = client.api_keys.get_current_key_metadata().data
        with pytest.raises(errors.OpenRouterError) as refused:
            client.credits.get_credits()
    assert (key.budgets, key.effective_budget, key.limit, key.limit_reset) == ([], None, None, None)
    assert refused.value.status_code == 403  # no USD budget: no credits


def test_the_typescript_sdk_reads_the_key_and_the_credits(tenancy: Tenancy, openrouter_ts_sdk: Path) -> None:
    tenancy.chat(tenancy.student)
    answer = run_typescript_client(openrouter_ts_sdk, tenancy.student, f"{tenancy.gateway.url}/api/v1")
    key, credits = answer["key"]["data"], answer["credits"]["data"]
    assert key["label"] == "student-1" and key["limit"] == 1.0
    assert key["allowedDataRegions"] == ["global"]
    assert key["freeModelDailyRequests"] == {"limit": -1, "remaining": -1, "used": 0}
    assert (key["organizationId"], key["workspaceId"]) == (None, None)
    assert credits == {"totalCredits": 1.0, "totalUsage": pytest.approx(COST)}


def run_typescript_client(folder: Path, key: str, base_url: str) -> Any:
    script = folder / "read-key.mjs"
    script.write_text(TS_CLIENT)
    done = subprocess.run(
        ["node", str(script), key, base_url], capture_output=True, text=True, timeout=60, check=False, cwd=folder
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
