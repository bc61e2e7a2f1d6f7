"""A provider given through the management API or the CLI: accepted names, its key kept apart, and the
checks it must pass before it is stored (the provider object's own validation and the SSRF rules)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from anygate.api.validation import describe_validation
from anygate.errors import InvalidRequest
from anygate.netguard import UnsafeURL, check_url_resolved
from anygate.settings import ProviderConfig
from anygate.store.providers import KEEP

MASK = "***"
SEED_002_NAMES = {"provider_type": "type", "api_base": "base_url"}


def translate_names(body: dict[str, Any]) -> dict[str, Any]:
    """Accept seed 002's ``provider_type``/``api_base`` where they do not contradict ``type``/``base_url``."""
    spec = dict(body)
    for old, new in SEED_002_NAMES.items():
        if old in spec:
            value = spec.pop(old)
            if new in spec and spec[new] != value:
                raise InvalidRequest(f"{old}: contradicts {new}", param=old, code="invalid_field")
            spec[new] = value
    return spec


def split_key(spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The provider object without its key, and the key as given (``KEEP`` when absent)."""
    spec = dict(spec)
    api_key = spec.pop("api_key", KEEP)
    if api_key is not KEEP and api_key is not None and not isinstance(api_key, str):
        raise InvalidRequest("api_key: must be a string or null", param="api_key", code="invalid_field")
    via = spec.get("via")
    if isinstance(via, dict) and isinstance(via.get("cloudflare"), dict) and via["cloudflare"].get("token"):
        raise InvalidRequest(
            "via.cloudflare.token: cannot be stored through the API yet; set it in the config file",
            param="via.cloudflare.token",
            code="invalid_field",
        )
    return spec, api_key


async def checked(spec: dict[str, Any]) -> ProviderConfig:
    """The provider object, validated, with its URL checked against SSRF (literal hosts and DNS answers)."""
    try:
        config = ProviderConfig.model_validate(spec)
    except ValidationError as exc:
        unsafe = [e for e in exc.errors() if isinstance((e.get("ctx") or {}).get("error"), UnsafeURL)]
        if unsafe:  # raised by the provider object as a whole: name the field it is about
            raise unsafe_url(unsafe[0]["ctx"]["error"]) from None
        raise describe_validation(exc.errors()) from None
    try:
        await check_url_resolved(config.base_url or "", bool(config.allow_private_network))
    except UnsafeURL as exc:
        raise unsafe_url(exc) from None
    return config


def unsafe_url(exc: UnsafeURL) -> InvalidRequest:
    return InvalidRequest(f"base_url: {exc}", param="base_url", code="unsafe_url")


def is_secret_header(name: str) -> bool:
    """Header values shown as ``"***"``: anything that looks like a credential."""
    lowered = name.lower()
    return lowered in ("authorization", "cookie", "proxy-authorization") or any(
        word in lowered for word in ("key", "token", "secret", "auth", "password")
    )


def merge_headers(stored: dict[str, str], given: dict[str, Any]) -> dict[str, Any]:
    """A header sent back as ``"***"`` keeps its stored value."""
    return {name: stored.get(name, value) if value == MASK else value for name, value in given.items()}
