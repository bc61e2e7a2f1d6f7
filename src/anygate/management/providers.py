"""A provider given through the management API or the CLI: accepted names, its key kept apart, masked
secrets sent back meaning "keep the stored value", and the checks it must pass before it is stored (the
provider object's own validation, the SSRF rules, and no stored secret following it to another host)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from anygate.egress import parse_proxy
from anygate.errors import InvalidRequest
from anygate.header_rules import InvalidHeader, has_control_characters
from anygate.management.validation import describe_validation
from anygate.netguard import UnsafeURL, check_url_resolved
from anygate.settings import ProviderConfig
from anygate.store.providers import KEEP, Keep, StoredProvider

MASK = "***"
KEPT = (MASK, "")  # a secret sent back as one of these keeps the stored value
PROVIDER_STORE_NAMES = {"provider_type": "type", "api_base": "base_url"}
# Errors the provider object raises as a whole (no location): the field each is about.
WHOLE_OBJECT_ERRORS = (
    ("base_url is required", "base_url"),
    ("give either base_url or via", "via"),
    ("Cloudflare AI Gateway", "via"),
)
PROXY_AUTHORIZATION = "proxy-authorization"
DEFAULT_PORTS = {"http": 80, "https": 443}


def translate_names(body: dict[str, Any]) -> dict[str, Any]:
    """Accept the ``provider_type``/``api_base`` names of provider stores that use them, where they do not
    contradict ``type``/``base_url``."""
    spec = dict(body)
    for old, new in PROVIDER_STORE_NAMES.items():
        if old in spec:
            value = spec.pop(old)
            if spec.get(new) is not None and spec[new] != value:
                raise InvalidRequest(f"{old}: contradicts {new}", param=old, code="invalid_field")
            spec[new] = value
    return spec


def split_key(spec: dict[str, Any]) -> tuple[dict[str, Any], str | None | Keep]:
    """The provider object without its key, and the key as given (``KEEP`` when absent)."""
    spec = dict(spec)
    api_key = spec.pop("api_key", KEEP)
    if api_key is not KEEP and api_key is not None and not isinstance(api_key, str):
        raise InvalidRequest("api_key: must be a string or null", param="api_key", code="invalid_field")
    if isinstance(api_key, str):
        check_key_text(api_key)
    return spec, api_key


def check_key_text(api_key: str) -> None:
    """A key goes upstream in a header: a control character in it would fail every request."""
    if has_control_characters(api_key):
        message = "api_key: the key contains a control character (CR, LF, NUL, ...)"
        raise InvalidRequest(message, param="api_key", code="invalid_field")


async def checked(spec: dict[str, Any]) -> ProviderConfig:
    """The provider object, validated, with its URL checked against SSRF (literal hosts and DNS answers)."""
    try:
        # Strict, as every management input: no "true" for a boolean, no "30" for a number. (The config file is
        # read leniently: ``${VAR}`` expands to text.)
        config = ProviderConfig.model_validate(spec, strict=True)
    except ValidationError as exc:
        raise describe_provider_errors(exc) from None
    try:
        await check_url_resolved(config.base_url or "", bool(config.allow_private_network))
    except UnsafeURL as exc:
        raise unsafe_url(exc) from None
    return config


def describe_provider_errors(exc: ValidationError) -> InvalidRequest:
    """A 400 naming the field, also for the errors the provider object raises as a whole."""
    errors = exc.errors(include_input=False)  # a stored value (a header, a key) may be a secret
    for error in errors:
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, UnsafeURL) and tuple(error.get("loc") or ())[:1] == ("proxy",):
            return InvalidRequest(f"proxy.url: {cause}", param="proxy.url", code="invalid_proxy")
        if isinstance(cause, UnsafeURL):  # raised by the provider object as a whole: name the field
            return unsafe_url(cause)
        if isinstance(cause, InvalidHeader) and tuple(error.get("loc") or ())[:1] == ("proxy",):
            return InvalidRequest(str(cause), param=f"proxy.headers.{cause.name}", code="invalid_header")
        if isinstance(cause, InvalidHeader):
            return InvalidRequest(str(cause), param=f"headers.{cause.name}", code="invalid_header")
    first = errors[0]
    if not first.get("loc"):
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        for start, field in WHOLE_OBJECT_ERRORS:
            if message.startswith(start):
                return InvalidRequest(f"{field}: {message}", param=field, code="invalid_field")
    return describe_validation(errors)


def unsafe_url(exc: UnsafeURL) -> InvalidRequest:
    return InvalidRequest(f"base_url: {exc}", param="base_url", code="unsafe_url")


def is_secret_header(name: str) -> bool:
    """Header values shown as ``"***"``: anything that looks like a credential."""
    lowered = name.lower()
    return lowered in ("authorization", "cookie", "proxy-authorization") or any(
        word in lowered for word in ("key", "token", "secret", "auth", "password")
    )


def merge_provider(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` over the stored provider (``{}`` when creating). A header value or an ``api_keys`` entry
    sent back as ``"***"`` or ``""`` keeps its stored value; with none stored, that is a 400 naming it. So do
    the ``via`` token, the Cloudflare Access secret and the proxy's header values (not when the proxy moves
    to another host: its credentials never follow it there)."""
    merged = {**stored, **changes}
    if isinstance(changes.get("headers"), dict):
        merged["headers"] = keep_headers(stored.get("headers") or {}, changes["headers"])
    if isinstance(changes.get("api_keys"), list):
        merged["api_keys"] = keep_keys(stored.get("api_keys") or [], changes["api_keys"])
    if isinstance(changes.get("via"), dict):
        merged["via"] = keep_via_token(stored.get("via") or {}, changes["via"])
    if isinstance(changes.get("cloudflare_access"), dict):
        merged["cloudflare_access"] = keep_access_secret(stored.get("cloudflare_access"), changes["cloudflare_access"])
    if isinstance(changes.get("proxy"), dict):
        merged["proxy"] = keep_proxy_headers(stored.get("proxy"), changes["proxy"])
    return merged


def keep_access_secret(stored: Any, given: dict[str, Any]) -> dict[str, Any]:
    """``cloudflare_access.client_secret`` sent back as ``"***"`` or ``""`` keeps the stored secret."""
    if given.get("client_secret") not in KEPT:
        return given
    stored_secret = stored.get("client_secret") if isinstance(stored, dict) else None
    if not stored_secret:
        raise nothing_to_keep("cloudflare_access.client_secret")
    return {**given, "client_secret": stored_secret}


def normalized_proxy(proxy: Any) -> dict[str, Any]:
    """A proxy object as stored: credentials written into its URL moved to a ``Proxy-Authorization``
    header (one that does not parse is left for the validation to refuse)."""
    if not isinstance(proxy, dict) or not isinstance(proxy.get("url"), str):
        return proxy if isinstance(proxy, dict) else {}
    headers = proxy.get("headers", {})
    if not isinstance(headers, dict):
        return proxy  # the wrong type, for the validation to name
    try:
        parsed = parse_proxy(proxy["url"], headers)
    except UnsafeURL:
        return proxy
    return {**proxy, "url": parsed.url, "headers": dict(parsed.headers)}


def keep_proxy_headers(stored: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The proxy's header values sent back as ``"***"`` or ``""`` keep the stored ones, while the proxy stays
    on the same scheme, host and port."""
    given, before = normalized_proxy(given), normalized_proxy(stored)
    headers = given.get("headers")
    if not isinstance(headers, dict) or not any(value in KEPT for value in headers.values()):
        return given
    if url_destination(str(before.get("url", ""))) != url_destination(str(given.get("url", ""))):
        name = next(name for name, value in headers.items() if value in KEPT)
        raise InvalidRequest(
            f"proxy.headers.{name}: the proxy moves to another host; give its credentials again with it "
            "(a stored secret never follows it there)",
            param=f"proxy.headers.{name}",
            code="api_key_required",
        )
    return {**given, "headers": keep_headers(before.get("headers") or {}, headers, "proxy.headers")}


def keep_via_token(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``via.cloudflare.token`` sent back as ``"***"`` or ``""`` keeps the stored token."""
    cloudflare = given.get("cloudflare")
    if not isinstance(cloudflare, dict) or cloudflare.get("token") not in KEPT:
        return given
    stored_token = (stored.get("cloudflare") or {}).get("token")
    if not stored_token:
        raise nothing_to_keep("via.cloudflare.token")
    return {**given, "cloudflare": {**cloudflare, "token": stored_token}}


def keep_headers(stored: dict[str, str], given: dict[str, Any], field: str = "headers") -> dict[str, Any]:
    known = {name.lower(): value for name, value in stored.items()}
    merged: dict[str, Any] = {}
    for name, value in given.items():
        if value in KEPT:
            if name.lower() not in known:
                raise nothing_to_keep(f"{field}.{name}")
            value = known[name.lower()]
        merged[name] = value
    return merged


def keep_keys(stored: list[str], given: list[Any]) -> list[Any]:
    merged: list[Any] = []
    for index, value in enumerate(given):
        if value in KEPT:
            if index >= len(stored):
                raise nothing_to_keep(f"api_keys.{index}")
            value = stored[index]
        merged.append(value)
    return merged


def reject_kept_key(api_key: Any) -> None:
    """On create, ``api_key: "***"`` has no stored key to keep."""
    if api_key == MASK:
        raise nothing_to_keep("api_key")


def nothing_to_keep(field: str) -> InvalidRequest:
    return InvalidRequest(
        f'{field}: "***" (or "") keeps the stored value, and none is stored', param=field, code="invalid_field"
    )


# ------------------------------------------------------------------------------------ moving a provider


def url_destination(url: str) -> tuple[object, ...]:
    """A URL's scheme, host and port (the default port when none is written)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.scheme, host, port or DEFAULT_PORTS.get(parts.scheme))


def destination(config: ProviderConfig) -> tuple[object, ...]:
    """Where a provider's requests, and with them its secrets, go: the base URL's scheme, host and port,
    and, through Cloudflare AI Gateway (one host for every account), the account and gateway too."""
    where = url_destination(config.base_url or "")
    if config.via is not None:
        where += (config.via.cloudflare.account_id, config.via.cloudflare.gateway_id)
    return where


def stored_destination(stored: StoredProvider) -> tuple[object, ...] | None:
    """The destination of a provider as stored; None for a row that no longer validates (then any change
    counts as a move). Its headers and extra keys play no part in where it goes."""
    try:
        return destination(stored.validated(headers={}, api_keys=[]))
    except ValidationError:
        return None


def require_secrets_on_move(
    stored: StoredProvider, changes: dict[str, Any], api_key: Any, moved: ProviderConfig
) -> None:
    """A provider that moves to another scheme, host or port takes none of its stored secrets along:
    each secret the API masks (its key, every ``api_keys`` entry, credential-like header values, the
    ``via`` token, the Cloudflare Access secret, the proxy's credential-like header values) must be given
    anew with the same change, or removed; else a 400 ``api_key_required``.
    Otherwise an admin session, or whoever stole one, could send the stored key to a host of its choosing.
    A change of path alone keeps them. ``changes`` and ``api_key`` are as given, before any merge."""
    if stored_destination(stored) == destination(moved):
        return
    missing = secrets_not_given(stored, changes, api_key)
    if missing:
        scheme, host, port = destination(moved)[:3]
        raise InvalidRequest(
            f"{missing[0]}: the change moves provider '{stored.id}' to another host ({scheme}://{host}:{port}); "
            f"give {', '.join(missing)} again with it, or remove them (a stored secret never follows a "
            "provider to another host)",
            param=missing[0],
            code="api_key_required",
        )


def secrets_not_given(stored: StoredProvider, changes: dict[str, Any], api_key: Any) -> list[str]:
    """The stored secrets ``changes`` would keep as they are (absent, ``"***"`` or ``""``)."""
    missing = []
    if stored.api_key and (api_key is KEEP or api_key in KEPT):
        missing.append("api_key")
    config = stored.config
    given_keys = changes.get("api_keys")
    if config.get("api_keys") and (not isinstance(given_keys, list) or any(k in KEPT for k in given_keys)):
        missing.append("api_keys")
    for name in config.get("headers") or {}:
        if is_secret_header(name) and is_header_kept(changes.get("headers", KEEP), name):
            missing.append(f"headers.{name}")
    stored_token = ((config.get("via") or {}).get("cloudflare") or {}).get("token")
    if stored_token and is_token_kept(changes.get("via", KEEP)):
        missing.append("via.cloudflare.token")
    if (config.get("cloudflare_access") or {}).get("client_secret") and is_access_secret_kept(
        changes.get("cloudflare_access", KEEP)
    ):
        missing.append("cloudflare_access.client_secret")
    missing.extend(proxy_secrets_kept(config.get("proxy"), changes.get("proxy", KEEP)))
    return missing


def is_access_secret_kept(given: Any) -> bool:
    """Whether the stored Cloudflare Access secret survives ``given`` (the object sent, or ``KEEP``)."""
    if not isinstance(given, dict):
        return given is KEEP
    return given.get("client_secret") in KEPT


def proxy_secrets_kept(stored: Any, given: Any) -> list[str]:
    """The stored proxy's credential-like headers that ``given`` (the proxy sent, ``None``, or ``KEEP``) keeps."""
    headers = normalized_proxy(stored).get("headers") or {}
    sent: Any = KEEP if given is KEEP else normalized_proxy(given).get("headers") or {}
    return [f"proxy.headers.{name}" for name in headers if is_secret_header(name) and is_header_kept(sent, name)]


def is_header_kept(given: Any, name: str) -> bool:
    """Whether the stored header ``name`` survives ``given`` (the headers sent, or ``KEEP`` when none)."""
    if not isinstance(given, dict):
        return given is KEEP
    sent = next((value for other, value in given.items() if other.lower() == name.lower()), None)
    return sent in KEPT


def is_token_kept(given: Any) -> bool:
    """Whether the stored ``via`` token survives ``given`` (the ``via`` sent, or ``KEEP`` when none)."""
    if not isinstance(given, dict):
        return given is KEEP
    cloudflare = given.get("cloudflare")
    return isinstance(cloudflare, dict) and cloudflare.get("token") in KEPT
