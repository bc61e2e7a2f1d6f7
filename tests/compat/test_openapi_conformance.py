"""``/openapi.json`` says what the gateway does: schemathesis runs every default check against a live
gateway on loopback (bounded in examples and time), and the model routes' real answers match the schemas
the document gives them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from tests.compat.conftest import MODEL, Tenancy

pytestmark = [pytest.mark.sockets, pytest.mark.timeout(300)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261202  # a fixed seed: the same cases each run (change it to explore)
MAX_EXAMPLES = 6
MAX_SECONDS = 60
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
MESSAGES_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")


def stored_admin_key(tenancy: Tenancy) -> str:
    """A stored admin key (the one from the environment cannot be rotated: ``/auth/rotate`` is 400 for it)."""
    with tenancy.admin() as admin:
        made = admin.post("/v1/keys", json={"alias": "schemathesis", "role": "admin"})
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def test_schemathesis_finds_nothing_the_document_does_not_say(tenancy: Tenancy, tmp_path: Path) -> None:
    key = stored_admin_key(tenancy)
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{tenancy.gateway.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_SECONDS),
        "--seed",
        str(SEED),
        # One worker: schemathesis's threads trip CPython 3.11's AST recursion check ("AST constructor
        # recursion depth mismatch", fixed in 3.12) while hypothesis describes its filters.
        "--workers",
        "1",
        "--no-color",
        "--report",
        "ndjson",
        "--report-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    summary = done.stdout[-12000:]
    assert done.returncode == 0, summary
    assert "Tested: " in summary and " failures" not in summary.rsplit("SUMMARY", 1)[-1], summary


def document_validator(document: dict[str, Any], component: str) -> Any:
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema_rs.validator_for(schema)


@pytest.mark.parametrize("route", ROUTES)
def test_the_model_routes_answer_as_documented(tenancy: Tenancy, route: str) -> None:
    with tenancy.admin() as admin:
        document = admin.get("/openapi.json").json()
        operation = document["paths"][route]["post"]
        answer = admin.post(route, json={"model": MODEL, "messages": [], "prompt": "hi", "input": "hi"})
        missing_model = admin.post(route, json={"messages": []})
    assert answer.status_code == 200, answer.text
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    document_validator(document, schema).validate(answer.json())
    assert missing_model.status_code == 400
    document_validator(document, "Error").validate(missing_model.json())
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404", "413", "429", "502", "504"}


@pytest.mark.parametrize("prefix", ["", "/anthropic"])
def test_the_messages_routes_answer_as_documented(tenancy: Tenancy, prefix: str) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with tenancy.admin() as admin:
        document = admin.get("/openapi.json").json()
        answers = {
            route: admin.post(prefix + route, json={"model": MODEL, "max_tokens": 16, "messages": messages})
            for route in MESSAGES_ROUTES
        }
        refused = admin.post(prefix + "/v1/messages", json={"model": MODEL, "messages": messages})
    for route, answer in answers.items():
        assert answer.status_code == 200, answer.text
        schema = document["paths"][route]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        document_validator(document, schema["$ref"].rsplit("/", 1)[1]).validate(answer.json())
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
    document_validator(document, "AnthropicError").validate(refused.json())


def test_every_route_is_in_the_document_with_typed_answers(tenancy: Tenancy) -> None:
    from anygate.api.openapi import OPERATIONS, SIGNIN_PATHS

    with tenancy.admin() as admin:
        document = admin.get("/openapi.json").json()
    paths = document["paths"]
    assert {*ROUTES, *MESSAGES_ROUTES, "/proxy/{provider}/v1/{endpoint}"} <= set(paths)
    legacy = {f"/openai{r}" for r in ROUTES} | {f"/anthropic{r}" for r in MESSAGES_ROUTES}
    assert legacy | {"/openai/v1/models", "/anthropic/v1/models"} <= set(paths)
    described = {(method, path) for path, item in paths.items() for method in item if method != "parameters"}
    model_routes = {(m, p) for m, p in described if paths[p][m].get("tags") == ["model routes"]}
    assert {("post", r) for r in (*ROUTES, *MESSAGES_ROUTES, *legacy)} <= model_routes
    management = described - model_routes
    assert management == set(OPERATIONS), "api/openapi.py OPERATIONS must describe every management route"
    for (method, path), operation in ((k, paths[k[1]][k[0]]) for k in described):
        for status, response in operation["responses"].items():
            if status in ("302", "303"):  # a redirect: no body, a Location
                assert "Location" in response["headers"] and "content" not in response, (method, path, status)
                continue
            content = response.get("content", {})
            assert content, (method, path, status)
            for media, body in content.items():
                assert body.get("schema") not in (None, {}, {"type": "object"}), (method, path, status, media)
        if path not in ("/health", "/health/ready", "/metrics", *SIGNIN_PATHS):
            assert "401" in operation["responses"], (method, path)
    assert "seed" not in json.dumps(document).lower()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "x-api-key", "api-key"}


def test_a_created_provider_is_answered_as_documented(tenancy: Tenancy) -> None:
    """Creating a provider is left out of the schemathesis run (loopback only): its answer is checked here."""
    upstream = tenancy.upstream.base_url
    with tenancy.admin() as admin:
        document = admin.get("/openapi.json").json()
        body = {"id": "loopback", "type": "custom", "base_url": upstream, "allow_private_network": True}
        jsonschema_rs.validator_for(
            {"$ref": "#/components/schemas/ProviderCreate", "components": document["components"]}
        ).validate(body)
        created = admin.post("/v1/providers", json=body)
        duplicate = admin.post("/v1/providers", json=body)
    assert created.status_code == 201, created.text
    document_validator(document, "ProviderView").validate(created.json())
    assert duplicate.status_code == 409
    assert "409" in document["paths"]["/v1/providers"]["post"]["responses"]
