"""Input validation errors, named by field, in the OpenAI error shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from anygate.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)
REQUEST_PARTS = ("body", "query", "path", "header", "cookie")


def describe_validation(errors: Any) -> InvalidRequest:
    """Name the first offending field: ``body.budget.period: Input should be 'daily', ...``."""
    first = errors[0] if errors else {}
    location = [str(part) for part in field_location(first.get("loc", ()))]
    field = ".".join(location) or None
    message = str(first.get("msg", "Invalid request")).removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"Request body is not valid JSON: {message}", code="invalid_json")
    if field is None and first.get("loc", ())[:1] == ("body",):  # the body as a whole
        if first.get("type") == "missing":
            return InvalidRequest("Request body is empty; expected a JSON object", code="invalid_body")
        return InvalidRequest("Request body must be a JSON object", code="invalid_body")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    return InvalidRequest(f"{field}: {message}" if field else message, param=field, code="invalid_field")


def field_location(loc: Sequence[Any]) -> Sequence[Any]:
    """The field's path, without the part of the request FastAPI puts first (a field may be named
    ``path`` or ``body`` itself: only the first part is the request's)."""
    return loc[1:] if loc[:1] and loc[0] in REQUEST_PARTS else loc


def validate(model: type[ModelT], data: Any) -> ModelT:
    """``model.model_validate(data)``, with a failure raised as a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise describe_validation(exc.errors()) from None
