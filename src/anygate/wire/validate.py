"""Typed reads of a client's JSON body that fail with a 400 naming the parameter (``messages[2].content``)."""

from __future__ import annotations

from typing import Any

from anygate.errors import InvalidRequest


def required(container: dict[str, Any], name: str, param: str) -> Any:
    value = container.get(name)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'", param=param, code="missing_required_parameter")
    return value


def invalid_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}", param=param, code="invalid_type")


def expect_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string")
    return value


def expect_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(param, "an object")
    return value


def expect_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_type(param, "an array")
    return value


def expect_int(value: Any, param: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(param, "an integer")
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"'{param}' must be at least {minimum}", param=param, code="invalid_value")
    return value


def expect_number(value: Any, param: str) -> float | int:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid_type(param, "a number")
    return value


def expect_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean")
    return value


def block_type(block: Any, param: str) -> str:
    """The ``type`` of a content block or item, which must be an object with a string ``type``."""
    return expect_str(required(expect_dict(block, param), "type", f"{param}.type"), f"{param}.type")


def path(at: str, name: str) -> str:
    """The parameter path of member ``name`` of the object at ``at`` (``messages[0]`` + ``role``)."""
    return f"{at}.{name}" if at else name


def required_str(container: dict[str, Any], name: str, at: str = "") -> str:
    param = path(at, name)
    return expect_str(required(container, name, param), param)


def required_dict(container: dict[str, Any], name: str, at: str = "") -> dict[str, Any]:
    param = path(at, name)
    return expect_dict(required(container, name, param), param)


def required_list(container: dict[str, Any], name: str, at: str = "") -> list[Any]:
    param = path(at, name)
    return expect_list(required(container, name, param), param)
