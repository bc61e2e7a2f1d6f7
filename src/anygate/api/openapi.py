"""The OpenAPI document at ``/openapi.json``: every route anygate serves, with what it answers.

FastAPI describes the management routes; this module makes that say what the server really does, and adds
the model routes and ``/proxy`` (raw ASGI in ``api/app.py``, so FastAPI never sees them):

- every operation lists each status it can answer, errors in the OpenAI error shape (``Error``); a bad
  request is a 400, never FastAPI's 422;
- every answer has a typed schema (``api/views.py``), and every request body too: the provider's is made
  from ``settings.ProviderConfig`` itself, so the document cannot drift from what is accepted;
- a key goes in ``Authorization: Bearer``, ``x-api-key`` or ``api-key``; the health routes (and
  ``/metrics`` while ``metrics_public`` is true) need none;
- the Anthropic Messages routes answer in Anthropic's shapes (their errors ``AnthropicError``), and the
  legacy prefixes (``/openai/v1/...``, ``/anthropic/v1/...``) are listed for the routes clients use there.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from anygate.api import views
from anygate.catalog import PRESETS
from anygate.management.schemas import CredentialsUpdate
from anygate.settings import ProviderConfig

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "param": {"type": ["string", "null"], "description": "The field at fault, when there is one."},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERROR_MEANINGS = {
    400: "Invalid request: `param` and the message name the field at fault",
    401: "No key, or a key that is unknown, revoked or expired",
    403: "The key may not do this (an admin route, a model or provider outside its allowlists)",
    404: "Nothing by that name (or nothing this key may see)",
    409: "Conflicts with what exists (a duplicate id, a read-only provider, a concurrent rotation)",
    413: "The request body is over `max_body_bytes`",
    429: "A rate limit or budget refuses the request now (`Retry-After` says when to retry, in seconds)",
    502: "The upstream could not be reached or answered badly (its own error is passed on when well formed)",
    503: "A part of the gateway this needs is not available (the store, accounting, a secret key)",
    504: "The upstream did not answer in time",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
# On a model route's answers to a key with limits or budgets: what it has left (docs/budgets-and-quotas.md).
RATE_LIMIT_HEADERS = {
    f"x-ratelimit-{part}-{unit}": {"description": f"{meaning} ({what}).", "schema": {"type": "string"}}
    for unit, what in (
        ("requests", "the tightest requests-per-minute limit"),
        ("tokens", "the tightest tokens-per-minute limit or token budget"),
        ("usd", "the tightest USD budget; anygate's own"),
    )
    for part, meaning in (
        ("limit", "The limit"),
        ("remaining", "What is left of it after this request's reservation"),
        ("reset", "When it resets, as a duration (`1s`, `6m0s`)"),
    )
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An anygate key (`sk-ag-...`)."},
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The same key."},
    "api-key": {"type": "apiKey", "in": "header", "name": "api-key", "description": "The same key."},
}
KEY_REQUIRED: list[dict[str, list[str]]] = [{"bearer": []}, {"x-api-key": []}, {"api-key": []}]
HTTP_URL = r"^https?://[^/?#@\s]+(/[^\s]*)?$"
# Each management operation: its success status, the shape of its answer, and every error it may answer.
# (401 is added to every operation that needs a key.)
Operation = tuple[int, type[BaseModel] | None, tuple[int, ...]]
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("get", "/health"): (200, views.Health, ()),
    ("get", "/health/ready"): (200, views.Ready, (503,)),
    ("get", "/metrics"): (200, None, ()),
    ("get", "/v1/models"): (200, views.ModelList, ()),
    ("get", "/openai/v1/models"): (200, views.ModelList, ()),
    ("get", "/anthropic/v1/models"): (200, views.ModelList, ()),
    ("get", "/v1/models/{model_id}"): (200, views.ModelObject, (404,)),
    ("get", "/v1/providers"): (200, views.ProviderList, ()),
    ("get", "/v1/providers/{provider_id}/models"): (200, views.ProviderModels, (404,)),
    ("post", "/v1/providers/health-check"): (200, views.HealthCheckReport, (403,)),
    ("post", "/v1/providers"): (201, views.ProviderView, (400, 403, 409, 413, 503)),
    ("get", "/v1/providers/{provider_id}"): (200, views.ProviderView, (403, 404)),
    ("put", "/v1/providers/{provider_id}"): (200, views.ProviderView, (400, 403, 404, 409, 413, 503)),
    ("delete", "/v1/providers/{provider_id}"): (200, views.Deleted, (403, 404, 409)),
    ("post", "/v1/providers/{provider_id}/test"): (200, views.ProbeResult, (400, 403, 404, 413, 503)),
    ("post", "/v1/keys"): (201, views.KeyCreated, (400, 403, 413)),
    ("get", "/v1/keys"): (200, views.KeyList, ()),
    ("get", "/v1/keys/{key_id}"): (200, views.KeyView, (404,)),
    ("patch", "/v1/keys/{key_id}"): (200, views.KeyView, (400, 403, 404, 413)),
    ("delete", "/v1/keys/{key_id}"): (200, views.KeyView, (404,)),
    ("post", "/auth/rotate"): (200, views.KeyRotated, (400, 403, 409)),
    ("get", "/v1/users"): (200, views.UserList, (403,)),
    ("post", "/v1/users"): (201, views.UserView, (400, 403, 413)),
    ("get", "/v1/users/{user_id}"): (200, views.UserDetail, (403, 404)),
    ("patch", "/v1/users/{user_id}"): (200, views.UserView, (400, 403, 404, 413)),
    ("delete", "/v1/users/{user_id}"): (200, views.Deleted, (403, 404)),
    ("get", "/admin/users"): (200, views.UsersOnly, (403,)),
    ("post", "/admin/users"): (201, views.UserWithKey, (400, 403, 413)),
    ("delete", "/admin/users/{user_id}"): (200, views.Deleted, (403, 404)),
    ("get", "/auth/creds"): (200, views.Credentials, (503,)),
    ("put", "/auth/creds"): (200, views.Credentials, (400, 413, 503)),
    ("get", "/quota"): (200, views.NeutralQuota, (503,)),
    ("get", "/v1/quota"): (200, views.NeutralQuota, (503,)),
    ("get", "/api/v1/key"): (200, views.OpenRouterKey, (503,)),
    ("get", "/api/v1/auth/key"): (200, views.OpenRouterKey, (503,)),
    ("get", "/v1/key"): (200, views.OpenRouterKey, (503,)),
    ("get", "/api/v1/credits"): (200, views.OpenRouterCredits, (403, 503)),
    ("get", "/v1/credits"): (200, views.OpenRouterCredits, (403, 503)),
    ("get", "/v1/usage"): (200, views.UsageReport, (400, 503)),
    ("get", "/v1/requests"): (200, views.RequestList, (400, 503)),
    ("get", "/v1/requests/{request_id}"): (200, views.RequestRecord, (404, 503)),
    ("get", "/key/info"): (200, views.LiteLLMKeyInfo, (403, 404, 503)),
    ("get", "/user/info"): (200, views.LiteLLMUserInfo, (403, 404, 503)),
    ("get", "/team/info"): (200, views.LiteLLMTeamInfo, (400, 403, 404, 503)),
    ("get", "/v1/teams"): (200, views.TeamList, (403,)),
    ("post", "/v1/teams"): (201, views.TeamView, (400, 403, 409, 413)),
    ("get", "/v1/teams/{team_id}"): (200, views.TeamDetail, (403, 404)),
    ("patch", "/v1/teams/{team_id}"): (200, views.TeamView, (400, 403, 404, 413)),
    ("delete", "/v1/teams/{team_id}"): (200, views.Deleted, (403, 404)),
    ("post", "/v1/teams/{team_id}/roster"): (200, views.RosterResult, (400, 403, 404, 413)),
    ("post", "/v1/users/{user_id}/keys/reissue"): (200, views.ReissueResult, (403, 404)),
    ("post", "/v1/teams/{team_id}/keys/reissue"): (200, views.ReissueResult, (403, 404)),
    ("get", "/v1/audit"): (200, views.AuditList, (400, 403)),
    ("get", "/auth/oidc"): (200, views.SignInInfo, ()),
    ("get", "/auth/oidc/login"): (302, None, (404, 503)),
    ("get", "/auth/oidc/callback"): (303, None, (404,)),
    ("get", "/auth/session"): (200, views.SessionView, ()),
    ("post", "/auth/session/logout"): (200, views.SessionView, (403,)),
}
# Console sign-in's routes: no key (a session cookie, where one is needed at all).
SIGNIN_PATHS = ("/auth/oidc", "/auth/oidc/login", "/auth/oidc/callback", "/auth/session", "/auth/session/logout")
LOCATION = {"Location": {"description": "Where the browser goes next.", "schema": {"type": "string"}}}
REDIRECTS: dict[int, dict[str, Any]] = {
    302: {"description": "To the OpenID issuer's sign-in page", "headers": LOCATION},
    303: {"description": "Back to the console: signed in, or `?signin_error=<reason>`", "headers": LOCATION},
}
# Other content types some answers have, besides JSON.
# Statuses whose answer is not always the error shape: the public answer's model beside it.
OTHER_ANSWERS: dict[tuple[str, str], dict[int, type[BaseModel]]] = {("get", "/health/ready"): {503: views.NotReady}}
# Operations whose success has another shape too: the model list asked with ``anthropic-version``.
ALTERNATIVE_ANSWERS: dict[str, type[BaseModel]] = {
    "/v1/models": views.AnthropicModelList,
    "/v1/models/{model_id}": views.AnthropicModelInfo,
}
# Paths under a legacy prefix, documented as the same operations as the path they stand for.
LEGACY_MANAGEMENT_PATHS = {"/openai/v1/models": "/v1/models", "/anthropic/v1/models": "/v1/models"}
EXTRA_CONTENT = {
    ("get", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
    ("get", "/v1/usage"): {"text/csv": {"schema": {"type": "string"}}},
}
MODEL_ROUTES: dict[str, tuple[str, type[BaseModel]]] = {
    "/v1/chat/completions": ("Chat completions (OpenAI's chat completions API)", views.ChatCompletion),
    "/v1/completions": ("Text completions (OpenAI's legacy completions API)", views.Completion),
    "/v1/embeddings": ("Embeddings (OpenAI's embeddings API)", views.EmbeddingList),
    "/v1/responses": ("Responses (OpenAI's Responses API)", views.ResponseObject),
}
MODEL_ROUTE_ERRORS = (400, 401, 403, 404, 413, 429, 502, 503, 504)


class AnthropicRoute(NamedTuple):
    summary: str
    answer: type[BaseModel]
    request: type[BaseModel]
    errors: tuple[int, ...]
    streams: bool


ANTHROPIC_ROUTES: dict[str, AnthropicRoute] = {
    "/v1/messages": AnthropicRoute(
        "Messages (Anthropic's Messages API)", views.AnthropicMessage, views.AnthropicMessagesRequest,
        MODEL_ROUTE_ERRORS, True,
    ),
    "/v1/messages/count_tokens": AnthropicRoute(
        "The input tokens of a Messages request, as anygate estimates them", views.AnthropicTokenCount,
        views.AnthropicCountTokensRequest, (400, 401, 403, 404, 413), False,
    ),
}  # fmt: skip
LEGACY_MODEL_PATHS = {
    **{f"/openai{path}": path for path in MODEL_ROUTES},
    **{f"/anthropic{path}": path for path in ANTHROPIC_ROUTES},
}
UPSTREAM_STATUS = {
    "description": "Another status of the upstream's, passed on with its error body when that is well formed",
    "content": {"application/json": {"schema": ERROR_REF}},
}
VIEW_MODELS: tuple[type[BaseModel], ...] = (
    *(model for _, model, _ in OPERATIONS.values() if model is not None),
    views.ModelRequest,
    views.ProxyAnswer,
    views.NotReady,
    *(model for _, model in MODEL_ROUTES.values()),
    *(route.answer for route in ANTHROPIC_ROUTES.values()),
    *(route.request for route in ANTHROPIC_ROUTES.values()),
    views.AnthropicError,
    *ALTERNATIVE_ANSWERS.values(),
)


def request_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body by hand."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def model_schemas(model: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, Any]:
    """``{model name: schema, and each schema it refers to}``, with references into the components."""
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    found: dict[str, Any] = schema.pop("$defs", {})
    found[model.__name__] = schema
    return found


def provider_schemas() -> dict[str, Any]:
    schemas = model_schemas(ProviderConfig)
    create = schemas.pop(ProviderConfig.__name__)
    preset = {"type": "string", "enum": sorted(PRESETS), "description": "A preset id, or `custom`."}
    create["properties"]["type"] = {"anyOf": [preset, {"type": "null"}], "default": None}
    create["properties"]["provider_type"] = {**preset, "description": "Another name for `type`, where it agrees."}
    url = {"type": "string", "pattern": HTTP_URL, "description": "`http://` or `https://`, a host, no user name"}
    create["properties"]["base_url"] = {"anyOf": [url, {"type": "null"}], "default": None}
    create["properties"]["api_base"] = {**url, "description": "Another name for `base_url`, where it agrees."}
    create["title"] = "ProviderCreate"
    create["description"] = (
        'A provider: a preset id or "custom" as `type`. `api_key`, each `api_keys` entry and the headers are '
        'stored encrypted and shown as "***".'
    )
    update = copy.deepcopy(create)
    update.pop("required", None)
    update["title"] = "ProviderUpdate"
    update["description"] = (
        "Fields to change (merged into the stored provider). `api_key`, a header value or an `api_keys` entry "
        'given as "***" or "" keeps the stored value; `id` cannot change.'
    )
    return {**schemas, "ProviderCreate": create, "ProviderUpdate": update}


def error_response(status: int, other: type[BaseModel] | None = None) -> dict[str, Any]:
    """The error shape (or, with ``other``, either it or that model's)."""
    response: dict[str, Any] = {"description": ERROR_MEANINGS[status], "content": {"application/json": {}}}
    schema: dict[str, Any] = ERROR_REF
    if other is not None:
        schema = {"oneOf": [ERROR_REF, {"$ref": REF.format(model=other.__name__)}]}
    response["content"]["application/json"]["schema"] = schema
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def success_response(
    model: type[BaseModel] | None, extra: dict[str, Any], other: type[BaseModel] | None = None
) -> dict[str, Any]:
    """The success answer (``other``: a second shape it may have)."""
    if model is None:
        return {"description": "Success", "content": extra}
    schema: dict[str, Any] = {"$ref": REF.format(model=model.__name__)}
    if other is not None:
        schema = {"anyOf": [schema, {"$ref": REF.format(model=other.__name__)}]}
    content = {"application/json": {"schema": schema}, **extra}
    return {"description": (model.__doc__ or "Success").strip().splitlines()[0], "content": content}


def unlisted(path: str, operation: dict[str, Any]) -> Operation:
    """What an operation missing from ``OPERATIONS`` is guessed to answer (a test asks that every one is
    listed; the guess keeps the document whole meanwhile)."""
    errors = {403, *((404,) if "{" in path else ()), *((400, 413) if "requestBody" in operation else ())}
    return 200, None, tuple(sorted(errors))


def fix_operation(method: str, path: str, operation: dict[str, Any], public: bool) -> None:
    """The statuses and answers of one management operation, from ``OPERATIONS``."""
    success, model, errors = OPERATIONS.get((method, path)) or unlisted(path, operation)
    extra = EXTRA_CONTENT.get((method, path), {})
    responses: dict[str, Any] = {}
    if success in REDIRECTS:
        responses[str(success)] = REDIRECTS[success]
    elif success < 400 and model is None and not extra:
        responses[str(success)] = operation.get("responses", {}).get(str(success), {"description": "Success"})
    elif success < 400:
        responses[str(success)] = success_response(model, extra, ALTERNATIVE_ANSWERS.get(path))
    others = OTHER_ANSWERS.get((method, path), {})
    for status in sorted({*errors, *(() if public else (401,)), *((success,) if success >= 400 else ())}):
        responses[str(status)] = error_response(status, others.get(status))
    operation["responses"] = responses
    if public:
        operation["security"] = []


def model_route(summary: str, answer: type[BaseModel]) -> dict[str, Any]:
    """A model route (raw ASGI): ``model`` is what anygate reads; the rest goes upstream as sent."""
    ok = {
        "description": "The upstream's answer: JSON, or server-sent events when the request asked to stream",
        "content": {
            "application/json": {"schema": {"$ref": REF.format(model=answer.__name__)}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model="ModelRequest")}}}}
    responses = {"200": ok, **{str(s): error_response(s) for s in MODEL_ROUTE_ERRORS}, "default": UPSTREAM_STATUS}
    return {
        "post": {"tags": ["model routes"], "summary": summary, "requestBody": body, "responses": limited(responses)}
    }


def limited(responses: dict[str, Any]) -> dict[str, Any]:
    """A model route's answers, each with the ``x-ratelimit-*`` headers a limited key gets (refusals before
    anything was reserved, 400 to 413, have none)."""
    return {
        status: {**answer, "headers": {**answer.get("headers", {}), **RATE_LIMIT_HEADERS}}
        if status == "default" or int(status) == 200 or int(status) >= 429
        else answer
        for status, answer in responses.items()
    }


def anthropic_route(route: AnthropicRoute) -> dict[str, Any]:
    """A route of the Anthropic Messages API: its request and answers in Anthropic's shapes."""
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": REF.format(model=route.answer.__name__)}}}
    if route.streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    ok = {"description": (route.answer.__doc__ or "Success").strip().splitlines()[0], "content": content}
    body_schema = {"$ref": REF.format(model=route.request.__name__)}
    body = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    error = {"application/json": {"schema": {"$ref": REF.format(model="AnthropicError")}}}
    responses: dict[str, Any] = {"200": ok}
    for status in route.errors:
        responses[str(status)] = {**error_response(status), "content": error}
    if route.streams:
        responses["default"] = {**UPSTREAM_STATUS, "content": error}
        responses = limited(responses)
    operation = {"tags": ["model routes"], "summary": route.summary, "requestBody": body, "responses": responses}
    return {"post": operation}


def legacy_alias(item: dict[str, Any], path: str) -> dict[str, Any]:
    """The operations of ``path``, documented again under a legacy prefix."""
    copied = copy.deepcopy(item)
    for operation in copied.values():
        if isinstance(operation, dict):
            operation["description"] = f"The same as `{path}` (a legacy prefix)."
            operation.pop("operationId", None)
    return copied


def proxy_route() -> dict[str, Any]:
    """``/proxy/{provider}/v1/{endpoint}``: a provider's own API, through its endpoint allowlist."""
    parameters = [
        {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "endpoint",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "The upstream endpoint (`chat/completions`, `models`); slashes allowed",
        },
    ]
    ok = {
        "description": "The upstream's answer, as it came",
        "content": {
            "application/json": {"schema": {"$ref": REF.format(model="ProxyAnswer")}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    errors = {str(s): error_response(s) for s in MODEL_ROUTE_ERRORS}
    description = (
        "Allowed by default: `POST chat/completions`, `POST completions`, `POST embeddings`, `GET models`; a "
        "provider's `proxy_endpoints` may allow others. Anything else is 404 `Route not implemented: <path>`."
    )

    def operation(method: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "tags": ["model routes"],
            "summary": f"{method.upper()} on a provider's own API",
            "description": description,
            "responses": limited({"200": ok, **errors, "default": UPSTREAM_STATUS}),
        }
        if method == "post":
            schema = {"type": "object", "description": "Sent to the upstream as is"}
            found["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        return found

    return {"parameters": parameters, "get": operation("get"), "post": operation("post")}


def build_openapi(app: FastAPI, metrics_public: bool = True) -> dict[str, Any]:
    """The document, made once per app."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update({"Error": ERROR_SCHEMA, **provider_schemas(), **model_schemas(CredentialsUpdate)})
    for model in VIEW_MODELS:
        schemas.update(model_schemas(model, mode="serialization"))
    components["securitySchemes"] = SECURITY_SCHEMES
    document["security"] = KEY_REQUIRED
    public = {"/health", "/health/ready", *SIGNIN_PATHS, *(("/metrics",) if metrics_public else ())}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            fix_operation(method, path, operation, path in public)
    paths = document["paths"]
    for path, (summary, answer) in MODEL_ROUTES.items():
        paths[path] = model_route(summary, answer)
    for path, route in ANTHROPIC_ROUTES.items():
        paths[path] = anthropic_route(route)
    for alias, path in {**LEGACY_MODEL_PATHS, **LEGACY_MANAGEMENT_PATHS}.items():
        paths[alias] = legacy_alias(paths[path], path)
    paths["/proxy/{provider}/v1/{endpoint}"] = proxy_route()
    app.openapi_schema = document
    return document
