"""The quota client: poll quota endpoints of gateways and providers, and say where each key came from.

A request is ``GET join(base_url, quota_path)`` with ``Authorization: Bearer <key>`` and
``Accept: application/json``; one timeout covers the whole answer, redirects are refused and the body is
capped. Every failure is one of a fixed set of messages, none of which can contain the key.

A source's key is looked up in this order (seed 000/001): the environment ``<ID>_API_KEY``, the user's
global config (``quota_sources[].api_key``; project-local files are not trusted for secrets), then
``auth.json`` in the data dir (``{"<id>": {"type": "api", "key": "..."}}``). A key from the global config
goes only to the ``base_url`` that same global entry names: a project file that reuses the id with another
URL gets no key from it.

Requests go through a ``Transport`` (``anygate.transport``), like every other outgoing request: every
address a source's host resolves to passes the SSRF guard. A gateway provider keeps its ``allow_private_network``;
a ``quota_sources`` entry may reach loopback and private networks unless it says
``allow_private_network: false`` (the quota client runs on the user's own machine, against gateways the
user lists, often on loopback or a LAN). Link-local and metadata addresses are never reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import ValidationError

from anygate.catalog import join_url, key_env_name
from anygate.errors import GatewayError, UpstreamTimeout
from anygate.netguard import UnsafeURL, check_url, validate_url_shape
from anygate.quota.formats import NO_CURRENCY, UNEXPECTED_SHAPE, Quota, QuotaFormat, UnexpectedShape, normalize
from anygate.settings import ProviderConfig, QuotaSource, Settings
from anygate.transport import OutgoingRequest, Proxy, Response, Timeouts, Transport

MAX_BODY_BYTES = 262144
DEFAULT_TIMEOUT = 5.0
KeySourceName = Literal["env", "config", "auth.json", "(none)"]


class QuotaFetchError(Exception):
    """A failed poll; ``str()`` is one of the contract's messages and never holds the key."""


@dataclass(frozen=True, slots=True)
class Source:
    """``headers``: sent besides the key (a gateway provider's own: Cloudflare Access, say); ``proxy``: the
    HTTP proxy the poll goes through (a provider's, else the environment's)."""

    id: str
    base_url: str
    quota_path: str
    format: QuotaFormat
    label: str
    allow_private_network: bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    proxy: Proxy | None = None

    @property
    def url(self) -> str:
        return join_url(self.base_url, self.quota_path)


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    key: str | None = field(repr=False)
    source: KeySourceName
    checked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuotaResult:
    source: Source
    quota: Quota | None = None
    error: str | None = None
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.source.id, "label": self.source.label, "format": self.source.format}
        if self.skipped:
            body["skipped"] = "no API key"
        elif self.error is not None:
            body["error"] = self.error
        elif self.quota is not None:
            body.update(self.quota.as_dict())
        return body


# ------------------------------------------------------------------------------------------ sources


def read_user_config(path: Path) -> list[QuotaSource]:
    """``quota_sources`` of the user's global config; an absent or unreadable file has none."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    entries = raw.get("quota_sources") if isinstance(raw, dict) else None
    sources: list[QuotaSource] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            sources.append(QuotaSource.model_validate(entry))
        except ValidationError:
            continue
    return sources


def configured_sources(settings: Settings, user_sources: list[QuotaSource]) -> list[Source]:
    """The gateway's providers that declare ``quota``, then every ``quota_sources`` entry (by id, once)."""
    found: dict[str, Source] = {}
    for provider in settings.providers:
        if provider.quota is not None and provider.base_url and provider.enabled:
            routed = settings.routed(provider)  # the gateway its requests go through
            found[provider.id] = provider_source(routed, settings.proxy_for(routed))
    environment = settings.proxy_environment()
    for entry in [*settings.quota_sources, *user_sources]:
        if entry.id not in found:
            label = entry.label or entry.id
            private = entry.allow_private_network
            proxy = environment.for_url(entry.base_url) if environment is not None else None
            found[entry.id] = Source(
                entry.id, entry.base_url, entry.quota_path, entry.format, label, private, proxy=proxy
            )
    return list(found.values())


def provider_source(provider: ProviderConfig, proxy: Proxy | None) -> Source:
    """A gateway provider's quota endpoint, reached as its other requests are: its headers, its proxy."""
    assert provider.quota is not None and provider.base_url is not None
    quota = provider.quota
    return Source(
        provider.id,
        provider.base_url,
        quota.path,
        quota.format,
        provider.name or provider.id,
        bool(provider.allow_private_network),
        provider.headers,
        proxy,
    )


def auth_json_path(settings: Settings) -> Path:
    return settings.data_dir / "auth.json"


def read_auth_json(path: Path, source_id: str) -> str | None:
    try:
        parsed = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    entry = parsed.get(source_id) if isinstance(parsed, dict) else None
    if isinstance(entry, dict) and entry.get("type", "api") == "api":
        key = entry.get("key")
        return key if isinstance(key, str) and key else None
    return None


def same_base_url(one: str, other: str) -> bool:
    return one.rstrip("/") == other.rstrip("/")


def resolve_key(settings: Settings, source: Source, user_sources: list[QuotaSource]) -> ResolvedKey:
    """``source``'s key and where it came from; a global-config key only for that entry's own base URL."""
    source_id = source.id
    env_name = key_env_name(source_id)
    config_path, auth_path = settings.user_config_file, auth_json_path(settings)
    checked = (f"env:{env_name}", str(config_path), str(auth_path))
    from_env = settings.api_key_env.get(env_name)
    if from_env is not None and from_env.get_secret_value():
        return ResolvedKey(from_env.get_secret_value(), "env", checked)
    for entry in user_sources:
        if entry.id != source_id or not same_base_url(entry.base_url, source.base_url):
            continue
        if entry.api_key is not None and entry.api_key.get_secret_value():
            return ResolvedKey(entry.api_key.get_secret_value(), "config", checked)
    from_auth = read_auth_json(auth_path, source_id)
    if from_auth is not None:
        return ResolvedKey(from_auth, "auth.json", checked)
    return ResolvedKey(None, "(none)", checked)


# ------------------------------------------------------------------------------------------ fetching


async def fetch_quota(transport: Transport, source: Source, key: str, timeout: float = DEFAULT_TIMEOUT) -> Quota:
    """Poll one source; raise QuotaFetchError with a contract message."""
    try:
        validate_url_shape(source.url)
    except UnsafeURL:
        raise QuotaFetchError("Invalid URL") from None
    try:
        # The transport resolves only host names (through the guard); a literal address is checked here.
        check_url(source.url, source.allow_private_network)
    except UnsafeURL as exc:
        raise QuotaFetchError(f"URL refused: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            body = await _get_json(transport, source, key, timeout)
    except (TimeoutError, UpstreamTimeout):
        raise QuotaFetchError(f"Request timeout after {timeout:g}s") from None
    except GatewayError:
        # Refused, unreachable, reset, DNS: never shown beyond this fixed message.
        raise QuotaFetchError("Connection failed") from None
    try:
        return without_key(normalize(source.format, body), key)
    except UnexpectedShape:
        raise QuotaFetchError(UNEXPECTED_SHAPE) from None


def without_key(quota: Quota, key: str) -> Quota:
    """The quota with any string holding the key dropped (a source echoing the token never gets it shown)."""
    tokens, cost = quota.tokens, quota.cost
    if tokens is not None and tokens.resets_at is not None and key in tokens.resets_at:
        tokens = replace(tokens, resets_at=None)
    if cost is not None and cost.resets_at is not None and key in cost.resets_at:
        cost = replace(cost, resets_at=None)
    if cost is not None and key in cost.currency:
        cost = replace(cost, currency=NO_CURRENCY)
    return Quota(tokens, cost)


async def _get_json(transport: Transport, source: Source, key: str, timeout: float) -> Any:
    headers = {**source.headers, "Authorization": f"Bearer {key}", "Accept": "application/json"}
    wait = Timeouts(connect=timeout, first_byte=timeout, idle=timeout, total=timeout)
    private = source.allow_private_network
    request = OutgoingRequest("GET", source.url, headers, None, wait, private, "Quota source", source.proxy)
    response = await transport.send(request)
    try:
        if 300 <= response.status < 400:
            raise QuotaFetchError("Redirect rejected")
        if response.status >= 400 or response.status < 200:
            raise QuotaFetchError(f"HTTP {response.status}")
        if "json" not in response.headers.content_type:
            raise QuotaFetchError("Expected a JSON response")
        raw = await _read_capped(response)
    finally:
        await response.aclose()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise QuotaFetchError("Invalid JSON response") from None


async def _read_capped(response: Response) -> bytes:
    too_large = QuotaFetchError(f"Response exceeded {MAX_BODY_BYTES} bytes")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    received = bytearray()
    async for chunk in response.chunks():
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            raise too_large
    return bytes(received)


async def poll_sources(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> list[QuotaResult]:
    """Every configured source, polled concurrently; sources without a key are skipped."""
    user_sources = read_user_config(settings.user_config_file)
    sources = configured_sources(settings, user_sources)
    from anygate.transport.network import NetworkTransport

    transport = NetworkTransport(connection_limit=max(1, len(sources)))

    async def poll(source: Source) -> QuotaResult:
        resolved = resolve_key(settings, source, user_sources)
        if resolved.key is None:
            return QuotaResult(source, skipped=True)
        try:
            return QuotaResult(source, await fetch_quota(transport, source, resolved.key, timeout))
        except QuotaFetchError as exc:
            return QuotaResult(source, error=str(exc))

    try:
        return list(await asyncio.gather(*(poll(s) for s in sources)))
    finally:
        await transport.aclose()


def key_status(settings: Settings) -> list[dict[str, Any]]:
    """``anygate quota status``: per source, where its key comes from (never the key)."""
    user_sources = read_user_config(settings.user_config_file)
    rows = []
    for source in configured_sources(settings, user_sources):
        resolved = resolve_key(settings, source, user_sources)
        rows.append(
            {
                "provider_id": source.id,
                "quota_path": source.quota_path,
                "api_key_configured": resolved.key is not None,
                "api_key_source": resolved.source,
                "api_key_checked_paths": list(resolved.checked),
            }
        )
    return rows
