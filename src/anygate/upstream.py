"""The upstream client: one OpenAI-compatible endpoint, over the process's transport.

``OpenAICompatibleProvider`` works on its own as a library (``async with OpenAICompatibleProvider(...)``)
and is what the gateway uses for every provider. It speaks HTTP only through a ``Transport``
(``anygate.transport``): by default the pooled, SSRF-guarded aiohttp one, in tests an in-memory one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson

from anygate.catalog import (
    ANTHROPIC_VERSION,
    PRESETS,
    ApiStyle,
    AuthStyle,
    ProviderType,
    detect_provider_name,
    join_url,
)
from anygate.errors import (
    GatewayError,
    UpstreamRedirect,
    UpstreamStatusError,
    UpstreamUnavailable,
    redact_text,
)
from anygate.netguard import check_url
from anygate.transport import OutgoingRequest, Proxy, Response, Timeouts, Transport
from anygate.wire.sse import DEFAULT_MAX_EVENT_BYTES, EventSplitter, event_data, is_done

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # an answer read whole; a stream is bounded per event


class DiscoveryFailed(Exception):
    """Model discovery did not produce a list; the message says why (never with a secret)."""


@dataclass(frozen=True, slots=True)
class HealthResult:
    healthy: bool
    latency_ms: float
    error: str | None = None


def auth_headers(auth: AuthStyle, api_key: str | None) -> dict[str, str]:
    if not api_key or auth == "none":
        return {}
    if auth == "api-key":
        return {"api-key": api_key}
    if auth == "x-api-key":
        return {"x-api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


class OpenAICompatibleProvider:
    """Any OpenAI-compatible endpoint: base URL, key, name detection, custom headers, discovery, health.

    >>> async with OpenAICompatibleProvider(api_key="...", base_url="https://api.groq.com/openai/v1") as p:
    ...     models = await p.list_models()
    ...     reply = await p.chat_completion({"model": models[0], "messages": [...]})
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        provider_name: str | None = None,
        custom_headers: Mapping[str, str] | None = None,
        *,
        provider_id: str = "openai_compatible",
        auth: AuthStyle = "bearer",
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        total_timeout: float = 600.0,
        first_byte_timeout: float | None = None,
        max_retries: int = 3,
        allow_private_network: bool = False,
        has_models_endpoint: bool = True,
        ollama_tags_fallback: bool = False,
        transport: Transport | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        other_keys: Iterable[str] = (),
        provider_type: ProviderType | None = None,
        proxy: Proxy | None = None,
        api: ApiStyle = "openai",
    ) -> None:
        """``other_keys``: keys this client may be handed per request (the provider's ``api_keys``); like
        its own key and header values, they are redacted from every upstream error it reports.
        ``provider_type``: default, the preset whose host the base URL is on (else ``OPENAI_COMPATIBLE``).
        ``proxy``: the HTTP proxy every request of this client goes through (its credentials are redacted
        like the key's). ``api``: ``anthropic`` for an upstream that speaks the Anthropic Messages API (it
        then gets an ``anthropic-version`` header on every request that names none)."""
        check_url(base_url, allow_private_network)
        self.provider_id = provider_id
        self.provider_type = provider_type or ProviderType.detect(base_url)
        self.base_url = base_url.rstrip("/")
        self.name = provider_name or detect_provider_name(base_url)
        self.auth = auth
        self.max_retries = max_retries
        self.timeout = timeout  # the longest gap between reads once the answer has started (idle)
        self.first_byte_timeout = first_byte_timeout or timeout
        self.allow_private_network = allow_private_network
        self.has_models_endpoint = has_models_endpoint
        self.ollama_tags_fallback = ollama_tags_fallback
        self.max_event_bytes = max_event_bytes  # the largest SSE event a stream may carry
        self.max_response_bytes = max_response_bytes  # the longest answer read whole (upstream bytes are untrusted)
        self.is_configured = bool(api_key) or auth == "none"
        self.has_key = bool(api_key) and auth != "none"  # whether requests carry a key (checks say so)
        self.headers: dict[str, str] = {**dict(custom_headers or {}), **auth_headers(auth, api_key)}
        self.proxy = proxy
        proxy_secrets = proxy.secrets if proxy is not None else ()
        self.secrets = sent_secrets([api_key or "", *other_keys, *proxy_secrets], self.headers.values())
        self.api = api
        # Sent unless the request names its own (a client's ``anthropic-version`` wins over this one).
        self.default_headers = {"anthropic-version": ANTHROPIC_VERSION} if api == "anthropic" else {}
        self.timeouts = Timeouts(connect_timeout, self.first_byte_timeout, timeout, total_timeout)
        self.origin = f"Provider '{provider_id}'"  # how transport errors name it
        if transport is None:
            from anygate.transport.network import NetworkTransport

            transport = NetworkTransport(connection_limit=100)
            self._owns_transport = True
        else:
            self._owns_transport = False
        self.transport = transport

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(id={self.provider_id!r}, name={self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> OpenAICompatibleProvider:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_transport:
            await self.transport.aclose()

    # ------------------------------------------------------------------------------ raw transport

    def url(self, endpoint: str) -> str:
        return join_url(self.base_url, endpoint)

    async def open(
        self,
        method: str,
        endpoint: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        api_key: str | None = None,
    ) -> Response:
        """Send one request and return the response with its body unread. Raises GatewayError.

        ``api_key`` replaces the provider's own key for this request (a caller's own key).
        """
        merged = {**headers, **self.headers} if headers else self.headers
        if self.default_headers:
            merged = {**self.default_headers, **merged}
        if api_key is not None:
            merged = {**merged, **auth_headers(self.auth if self.auth != "none" else "bearer", api_key)}
        request = OutgoingRequest(
            method,
            self.url(endpoint),
            merged,
            body if method != "GET" else None,
            timeouts or self.timeouts,
            self.allow_private_network,
            self.origin,
            self.proxy,
            self.max_response_bytes,
        )
        response = await self.transport.send(request)
        if 300 <= response.status < 400:  # never followed (SSRF), and never handed on as if it were an answer
            await response.aclose()
            raise UpstreamRedirect(f"{self.origin} answered HTTP {response.status}: redirect refused")
        return response

    def secrets_sent(self, api_key: str | None = None) -> tuple[str, ...]:
        """Every secret a request sends: this client's, and ``api_key`` when one replaces its own."""
        return self.secrets if api_key is None else (api_key, *self.secrets)

    def status_error(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, api_key: str | None = None
    ) -> UpstreamStatusError:
        """The upstream's error answer to a request sent with ``api_key`` (None: this client's own key),
        every secret that request carried redacted from it."""
        return UpstreamStatusError(status, body, headers, self.secrets_sent(api_key))

    def describe(self, exc: BaseException) -> str:
        """A failure as discovery, health checks and probes report it, with no secret of this client."""
        return redact_text(describe_failure(exc), self.secrets)

    async def read_body(self, response: Response) -> bytes:
        try:
            return await response.read()
        finally:
            await response.aclose()

    async def request_json(self, method: str, endpoint: str, payload: Any = None) -> Any:
        """One JSON round trip with retries on retryable failures; error statuses raise."""
        body = orjson.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(self.max_retries + 1):
            try:
                response = await self.open(method, endpoint, body, headers)
                raw = await self.read_body(response)
                if response.status >= 400:
                    raise self.status_error(response.status, raw)
                return parse_json(raw, self.provider_id)
            except GatewayError as exc:
                if not exc.retryable or attempt == self.max_retries:
                    raise
                await asyncio.sleep(backoff_delay(attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------ library API

    async def chat_completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._post_object("chat/completions", {**payload, "stream": False})

    async def completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._post_object("completions", {**payload, "stream": False})

    async def embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._post_object("embeddings", payload)

    async def stream_chat_completion(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield each ``chat.completion.chunk`` as a dict, until ``[DONE]``."""
        body = orjson.dumps({**payload, "stream": True})
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        response = await self.open("POST", "chat/completions", body, headers)
        try:
            if response.status >= 400:
                raise self.status_error(response.status, await response.read())
            splitter = EventSplitter(self.max_event_bytes)
            started = False
            async for chunk in response.chunks():
                for event in splitter.feed(chunk):
                    if not started:
                        started = True
                        response.set_read_timeout(self.timeout)  # first event in: the idle timeout
                    if is_done(event):
                        return
                    data = event_data(event)
                    if data:
                        yield parse_json(data, self.provider_id)
            last = event_data(splitter.flush())  # an event the stream's end completed
            if last and last.strip() != b"[DONE]":
                yield parse_json(last, self.provider_id)
        finally:
            await response.aclose()

    async def _post_object(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = await self.request_json("POST", endpoint, payload)
        if not isinstance(result, dict):
            raise UpstreamUnavailable(f"Provider '{self.provider_id}' answered with a non-object JSON body")
        return result

    async def list_model_entries(self) -> list[dict[str, Any]]:
        """The upstream's model objects (``GET <base_url>/models``; Ollama's ``/api/tags`` as fallback)."""
        if not self.has_models_endpoint:
            raise DiscoveryFailed(f"{self.name} has no model list endpoint")
        try:
            return model_entries(await self.request_json("GET", "models"))
        except (GatewayError, DiscoveryFailed) as exc:
            if not self.ollama_tags_fallback:
                raise DiscoveryFailed(self.describe(exc)) from exc
        return await self._ollama_tags()

    async def list_models(self) -> list[str]:
        return [entry["id"] for entry in await self.list_model_entries()]

    async def _ollama_tags(self) -> list[dict[str, Any]]:
        root = self.base_url.removesuffix("/v1")
        url, private = join_url(root, "api/tags"), self.allow_private_network
        request = OutgoingRequest("GET", url, self.headers, None, self.timeouts, private, self.origin, self.proxy)
        try:
            response = await self.transport.send(request)
            raw = await self.read_body(response)
        except GatewayError as exc:
            raise DiscoveryFailed(exc.message) from exc
        if 300 <= response.status < 400:  # never followed, like every upstream redirect
            raise DiscoveryFailed(f"HTTP {response.status} from /api/tags: redirect refused")
        if response.status >= 400:
            raise DiscoveryFailed(f"HTTP {response.status} from /api/tags")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise DiscoveryFailed("/api/tags answered with a body that is not JSON") from None
        names = [m.get("name") for m in parsed.get("models", [])] if isinstance(parsed, dict) else []
        return [{"id": n, "object": "model", "owned_by": self.provider_id} for n in names if isinstance(n, str)]

    async def health_check(self) -> HealthResult:
        """Healthy when the model list (or, without one, a trivial request) answers without a 5xx."""
        started = time.perf_counter()
        try:
            if self.has_models_endpoint:
                await self.list_model_entries()
            else:
                response = await self.open("GET", "models")
                await self.read_body(response)
                if response.status >= 500:
                    raise DiscoveryFailed(f"HTTP {response.status}")
        except (GatewayError, DiscoveryFailed) as exc:
            return HealthResult(False, elapsed_ms(started), self.describe(exc))
        return HealthResult(True, elapsed_ms(started))

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: Any,
        api_key: str | None,
        transport: Transport | None = None,
        proxy: Proxy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> OpenAICompatibleProvider:
        """Build from a ``settings.ProviderConfig`` (typed ``Any`` to keep this module free of settings);
        ``proxy``: the one its requests go through (``Settings.proxy_for``); ``max_response_bytes``: the
        longest answer it reads whole (``Settings.max_response_bytes``)."""
        preset = PRESETS[config.type]
        timeouts = config.timeouts
        return cls(
            api_key=api_key,
            base_url=config.base_url,
            provider_name=config.name,
            custom_headers=config.headers,
            provider_id=config.id,
            auth=config.auth,
            timeout=timeouts.idle or config.timeout,
            connect_timeout=timeouts.connect,
            total_timeout=timeouts.total,
            first_byte_timeout=timeouts.first_byte or config.timeout,
            max_retries=config.max_retries,
            other_keys=[key.get_secret_value() for key in config.api_keys],
            allow_private_network=bool(config.allow_private_network),
            has_models_endpoint=preset.has_models_endpoint,
            ollama_tags_fallback=preset.ollama_tags_fallback,
            transport=transport,
            provider_type=ProviderType(config.type),
            proxy=proxy,
            api=config.api or preset.api,
            max_response_bytes=max_response_bytes,
        )


class OpenRouterProvider(OpenAICompatibleProvider):
    """Backward-compatible name for an OpenAI-compatible provider pointed at OpenRouter."""

    def __init__(self, api_key: str | None = None, base_url: str = DEFAULT_BASE_URL, **kwargs: Any) -> None:
        kwargs.setdefault("provider_id", "openrouter")
        kwargs.setdefault("provider_name", "OpenRouter")
        kwargs.setdefault("provider_type", ProviderType.OPENROUTER)
        super().__init__(api_key=api_key, base_url=base_url, **kwargs)


def model_entries(parsed: Any) -> list[dict[str, Any]]:
    """Accept ``{"data": [...]}``, ``{"models": [...]}`` or a bare list; entries as objects or ids."""
    items = parsed.get("data", parsed.get("models")) if isinstance(parsed, dict) else parsed
    if not isinstance(items, list):
        raise DiscoveryFailed("the model list has an unexpected shape")
    entries: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            entries.append({"id": item, "object": "model"})
        elif isinstance(item, dict) and isinstance(item.get("id") or item.get("name"), str):
            entries.append({**item, "id": item.get("id") or item["name"]})
    return entries


def parse_json(raw: bytes, provider_id: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamUnavailable(f"Provider '{provider_id}' sent a body that is not valid JSON") from None


def sent_secrets(keys: Iterable[str], header_values: Iterable[str]) -> tuple[str, ...]:
    """The secret strings requests carry: keys, and header values (a ``Bearer <token>`` value's token too)."""
    found = {key for key in keys if key}
    for value in header_values:
        found.add(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token"):
            found.add(token.strip())
    return tuple(sorted(found, key=len, reverse=True))


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return exc.message
    return str(exc)


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 8.0) -> float:
    """Full-jitter exponential backoff."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
