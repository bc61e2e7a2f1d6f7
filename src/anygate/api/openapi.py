"""The OpenAPI document at ``/openapi.json``: FastAPI's, made to say what the server really does.

- A bad request is a 400 in the OpenAI error shape (``Error``), never FastAPI's 422.
- The provider and credential bodies, which their routes read by hand, get real schemas: the provider's
  is made from ``settings.ProviderConfig`` itself, so the document cannot drift from what is accepted.
- Every route but the health ones and ``/metrics`` needs a key: ``Authorization: Bearer <key>`` (``bearer``).
  ``/metrics`` needs one too when ``metrics_public`` is false; the document describes the default.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from anygate.api.schemas import CredentialsUpdate
from anygate.settings import ProviderConfig

REF = "#/components/schemas/{model}"
PUBLIC_PATHS = ("/health", "/health/ready", "/metrics")
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
BAD_REQUEST = {
    "description": "Invalid request: `param` and the message name the field at fault",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
SEED_002_PROPERTIES = {
    "provider_type": {"type": "string", "description": "Seed 002's name for `type`."},
    "api_base": {"type": "string", "description": "Seed 002's name for `base_url`."},
}


def request_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body by hand."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def model_schemas(model: type[BaseModel]) -> dict[str, Any]:
    """``{model name: schema, and each schema it refers to}``, with references into the components."""
    schema = model.model_json_schema(ref_template=REF)
    found: dict[str, Any] = schema.pop("$defs", {})
    found[model.__name__] = schema
    return found


def provider_schemas() -> dict[str, Any]:
    schemas = model_schemas(ProviderConfig)
    create = schemas.pop(ProviderConfig.__name__)
    create["properties"].update(SEED_002_PROPERTIES)
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


def fix_operation(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if responses.pop("422", None) is not None or "requestBody" in operation:
        responses["400"] = BAD_REQUEST
    if path in PUBLIC_PATHS:
        operation["security"] = []


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document, made once per app."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update({"Error": ERROR_SCHEMA, **provider_schemas(), **model_schemas(CredentialsUpdate)})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An anygate key (`sk-ag-...`)."}
    }
    document["security"] = [{"bearer": []}]
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            fix_operation(path, operation)
    app.openapi_schema = document
    return document
