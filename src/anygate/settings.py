"""The one Settings object: command-line flags > environment (and ``.env``) > YAML config file > defaults.

This is the only module that reads the environment. ``load_settings`` takes the environment as a mapping
so that tests (and the zero-config rules for OpenAI-compatible variables) read exactly what they are given.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote, urlsplit

import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from anygate.catalog import (
    CLOUDFLARE_ROUTES,
    DEFAULT_CLOUDFLARE_HOST,
    PRESETS,
    ApiStyle,
    AuthStyle,
    Preset,
    QuotaFormat,
    cloudflare_base_url,
    detect_provider_name,
    key_env_name,
)
from anygate.egress import Proxy, ProxyEnvironment, parse_no_proxy, parse_proxy
from anygate.errors import ConfigError
from anygate.header_rules import check_headers, has_control_characters
from anygate.netguard import UnsafeURL

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Log lines: ``auto`` is readable text on a terminal and JSON lines otherwise (a collector, a pipe, a file).
LogFormat = Literal["auto", "json", "text"]


def whole_number(value: Any) -> Any:
    """A JSON number without a fraction (``5.0``) is a whole number, as JSON Schema's ``integer`` has it;
    anything else is left for the ``int`` check (``5.5``, ``true`` and ``"5"`` refused where input is strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints go before the validator (``Annotated[int, Field(gt=0), BeforeValidator(whole_number)]``): after
# it, pydantic leaves them out of the JSON schema.
WholeNumber = Annotated[int, BeforeValidator(whole_number)]
DEFAULT_OPENROUTER_URL = "https://openrouter.ai/api/v1"
ENV_PROVIDER_ID = "openai_compatible"
LEGACY_PROVIDER_ID = "openrouter"
TRUTHY = {"1", "true", "yes", "on"}
# A zero-config provider carries, until validation, which variable set each of its fields.
ENV_SOURCES_KEY = "__env_sources__"
FALSY = {"0", "false", "no", "off", ""}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotaConfig(Strict):
    path: str = "/quota"
    format: QuotaFormat = "neutral"


def gateway_host(value: str | None) -> str | None:
    """A gateway host is a scheme, a host and a port: ``https://gateway.ai.cloudflare.com``."""
    if value is None:
        return None
    from anygate.netguard import validate_url_shape

    validate_url_shape(value)
    if urlsplit(value).path.strip("/") or urlsplit(value).query:
        raise ValueError("a gateway host is a scheme, a host and a port only (no path)")
    return value.rstrip("/")


class CloudflareVia(Strict):
    account_id: str
    gateway_id: str
    token: SecretStr | None = None
    # None: the gateway-wide host (``cloudflare_ai_gateway.host``, by default Cloudflare's own)
    host: str | None = None

    @field_validator("token")
    @classmethod
    def _sendable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and has_control_characters(value.get_secret_value()):
            raise ValueError("the token contains a control character (CR, LF, NUL, ...)")
        return value

    _host_shape = field_validator("host")(gateway_host)


class CloudflareGateway(Strict):
    """``cloudflare_ai_gateway``: the host every ``via: cloudflare`` goes to (unless it names its own), and,
    with ``account_id`` and ``gateway_id``, the gateway every preset Cloudflare fronts goes through unless the
    provider names its own ``base_url`` or ``via``. ``allow_private_network``: the host may be on loopback or a
    private network (a self-hosted or test stand-in)."""

    account_id: str | None = None
    gateway_id: str | None = None
    token: SecretStr | None = Field(None, repr=False)
    host: str = DEFAULT_CLOUDFLARE_HOST
    allow_private_network: bool = False

    _host_shape = field_validator("host")(gateway_host)

    @model_validator(mode="after")
    def _whole_gateway(self) -> CloudflareGateway:
        if (self.account_id is None) != (self.gateway_id is None):
            raise ValueError("account_id and gateway_id go together: give both, or neither")
        if self.token is not None and self.account_id is None:
            raise ValueError("a token needs the gateway it is for: give account_id and gateway_id")
        return self

    def default_via(self) -> CloudflareVia | None:
        if self.account_id is None or self.gateway_id is None:
            return None
        return CloudflareVia(account_id=self.account_id, gateway_id=self.gateway_id, token=self.token, host=self.host)


class Via(Strict):
    cloudflare: CloudflareVia


class ProviderProxy(Strict):
    """The HTTP proxy a provider's requests go through (it overrides ``HTTPS_PROXY``/``HTTP_PROXY``).
    Credentials in the URL move to a ``Proxy-Authorization: Basic`` header when it is read."""

    url: str = Field(repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value, to_proxy=True)
        return value

    @model_validator(mode="after")
    def _credentials_in_headers(self) -> ProviderProxy:
        proxy = parse_proxy(self.url, self.headers)  # UnsafeURL, a ValueError, when it is no proxy URL
        self.url, self.headers = proxy.url, dict(proxy.headers)
        return self

    def proxy(self) -> Proxy:
        return Proxy(self.url, dict(self.headers))


class EnvironmentProxies(Strict):
    """``HTTPS_PROXY``, ``HTTP_PROXY`` (either case) and ``NO_PROXY``, as the environment gave them."""

    https: str | None = None
    http: str | None = None
    no_proxy: list[str] = Field(default_factory=list)

    def parsed(self) -> ProxyEnvironment | None:
        https, http = (parse_proxy(url) if url else None for url in (self.https, self.http))
        if https is None and http is None:
            return None
        return ProxyEnvironment(https, http, parse_no_proxy(self.no_proxy))


class CloudflareAccess(Strict):
    """A Cloudflare Access service token: both halves or none (``CF-Access-Client-Id``/``-Secret``)."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr

    @field_validator("client_id")
    @classmethod
    def _sendable_id(cls, value: str) -> str:
        if has_control_characters(value):
            raise ValueError("the client id contains a control character (CR, LF, NUL, ...)")
        return value

    @field_validator("client_secret")
    @classmethod
    def _sendable_secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the client secret is empty")
        if has_control_characters(value.get_secret_value()):
            raise ValueError("the client secret contains a control character (CR, LF, NUL, ...)")
        return value

    def headers(self) -> dict[str, str]:
        return {"CF-Access-Client-Id": self.client_id, "CF-Access-Client-Secret": self.client_secret.get_secret_value()}


class Timeouts(Strict):
    """Seconds. ``first_byte`` and ``idle`` default to the provider's ``timeout``."""

    connect: float = Field(10.0, gt=0)
    first_byte: float | None = Field(None, gt=0)
    idle: float | None = Field(None, gt=0)
    total: float = Field(600.0, gt=0)


class PriceConfig(Strict):
    """A configured price in USD per million tokens; it wins over discovered and genai-prices prices.

    A token class without a price of its own here is priced as plain ``input`` (cache reads and writes,
    audio and image input) or ``output`` (audio and image output; reasoning is always output)."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    audio_input: float | None = Field(None, ge=0)
    audio_output: float | None = Field(None, ge=0)
    image_input: float | None = Field(None, ge=0)
    image_output: float | None = Field(None, ge=0)


class ProviderConfig(Strict):
    """One upstream. The same object in the config file and in the management API."""

    id: Annotated[str, Field(pattern=SLUG)]
    type: str | None = None
    name: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_keys: list[SecretStr] = Field(default_factory=list)
    # Custom headers may carry credentials (Azure's api-key, Cloudflare's cf-aig-authorization): no repr.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    auth: AuthStyle | None = None
    models: list[str] = Field(default_factory=list)
    allow_private_network: bool | None = None
    quota: QuotaConfig | None = None
    timeout: float = Field(30.0, gt=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_retries: Annotated[int, Field(ge=0, le=10), BeforeValidator(whole_number)] = 3
    enabled: bool = True
    default_model: str | None = None
    proxy_endpoints: list[str] | None = None
    via: Via | None = None
    # Sent to the upstream with every request (an upstream behind Cloudflare Access), proxy or not.
    cloudflare_access: CloudflareAccess | None = None
    proxy: ProviderProxy | None = None  # None: HTTPS_PROXY/HTTP_PROXY/NO_PROXY, unless turned off
    weight: float = Field(1.0, gt=0)
    priority: WholeNumber = 0
    # Whether to ask for usage on streams (``stream_options.include_usage``); None: the probe's finding,
    # else the preset's, else tried (and dropped for good if the upstream refuses it).
    stream_usage: bool | None = None
    # ``anthropic``: the upstream speaks the Anthropic Messages API, and ``/v1/messages`` passes through to it
    # as is (None: the preset's; ``openai`` for a custom provider).
    api: ApiStyle | None = None
    # Whether the upstream serves the Responses API (``/responses``); False: ``/v1/responses`` is bridged over
    # chat completions. None: the probe's finding, else the preset's, else tried (and bridged from the
    # upstream's first 404 or 405 on, in this process).
    responses: bool | None = None
    # The provider's own prices, by its model id (``*``: every model without its own), USD per million
    # tokens; a price under ``prices:`` at the top level (``provider/model``) wins over these.
    prices: dict[Annotated[str, Field(min_length=1, max_length=256)], PriceConfig] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown provider type '{value}' (known: {known})")
        return value

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)  # InvalidHeader names the header, never its value
        return value

    @field_validator("api_key")
    @classmethod
    def _sendable_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and has_control_characters(value.get_secret_value()):
            raise ValueError("the key contains a control character (CR, LF, NUL, ...)")
        return value

    @field_validator("api_keys")
    @classmethod
    def _sendable_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, key in enumerate(value):
            if has_control_characters(key.get_secret_value()):
                raise ValueError(f"key {index} contains a control character (CR, LF, NUL, ...)")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from anygate.netguard import validate_url_shape

        validate_url_shape(value)
        return value

    @field_validator("proxy_endpoints")
    @classmethod
    def _endpoint_rules(cls, value: list[str] | None) -> list[str] | None:
        for rule in value or []:
            if not re.fullmatch(r"(GET|POST|PUT|PATCH|DELETE) [A-Za-z0-9_./-]+", rule):
                raise ValueError(f"proxy endpoint '{rule}' must look like 'POST chat/completions'")
        return value

    @model_validator(mode="after")
    def _fill_from_preset(self) -> ProviderConfig:
        if self.type is None:
            self.type = self.id if self.id in PRESETS else "custom"
        preset = PRESETS[self.type]
        if self.via is not None:
            self._route_via_cloudflare(preset, self.via.cloudflare)
        if self.cloudflare_access is not None:
            self.headers = {**self.cloudflare_access.headers(), **self.headers}
        if self.base_url is None:
            if preset.base_url is None:
                raise ValueError(f"base_url is required for a provider of type '{self.type}'")
            self.base_url = preset.base_url
        if self.auth is None:
            self.auth = "none" if preset.keyless else preset.auth
        if self.api is None:
            self.api = preset.api
        if self.allow_private_network is None:
            self.allow_private_network = preset.allow_private_network
        if self.quota is None and preset.quota is not None:
            self.quota = QuotaConfig(path=preset.quota.path, format=preset.quota.format)
        if not self.models and preset.static_models:
            self.models = list(preset.static_models)
        if self.name is None:
            self.name = preset.name if self.type != "custom" else detect_provider_name(self.base_url or "")
        if self.base_url is not None:
            # The SSRF checks that need no DNS, at load time: a clear error now rather than a failed start.
            from anygate.netguard import check_url

            check_url(self.base_url, bool(self.allow_private_network))
        return self

    def _route_via_cloudflare(self, preset: Preset, cloudflare: CloudflareVia) -> None:
        """Reach the vendor through Cloudflare AI Gateway: its URL, in its slugs, and its token header."""
        host = cloudflare.host or DEFAULT_CLOUDFLARE_HOST
        url = cloudflare_base_url(preset, cloudflare.account_id, cloudflare.gateway_id, host)
        if self.base_url is not None and self.base_url.rstrip("/") != url:
            raise ValueError("give either base_url or via, not both")
        self.base_url = url
        if cloudflare.token is not None:
            token = cloudflare.token.get_secret_value()
            self.headers = {"cf-aig-authorization": f"Bearer {token}", **self.headers}

    def through_gateway(self, gateway: CloudflareGateway) -> ProviderConfig:
        """This provider as the gateway-wide Cloudflare settings route it: a ``via`` with no host of its own
        goes to ``gateway.host``; a preset Cloudflare fronts, with neither ``via`` nor a ``base_url`` of its
        own, goes through the gateway-wide default. Anything else is as it is."""
        preset = PRESETS[self.type or "custom"]
        via = self.via.cloudflare if self.via is not None else None
        if via is not None and via.host is None and gateway.host != DEFAULT_CLOUDFLARE_HOST:
            url = cloudflare_base_url(preset, via.account_id, via.gateway_id, gateway.host)
            return self.model_copy(update={"base_url": url, "allow_private_network": self._private_for(gateway)})
        default = gateway.default_via()
        if via is not None or default is None or preset.id not in CLOUDFLARE_ROUTES or self.base_url != preset.base_url:
            return self
        url = cloudflare_base_url(preset, default.account_id, default.gateway_id, default.host or gateway.host)
        headers = self.headers
        if default.token is not None:
            headers = {"cf-aig-authorization": f"Bearer {default.token.get_secret_value()}", **headers}
        update = {"base_url": url, "via": Via(cloudflare=default), "headers": headers}
        return self.model_copy(update={**update, "allow_private_network": self._private_for(gateway)})

    def _private_for(self, gateway: CloudflareGateway) -> bool:
        return bool(self.allow_private_network) or gateway.allow_private_network


class ExportHttp(Strict):
    """Records POSTed in batches (a JSON array) to ``url``, with ``headers`` (its credentials, say)."""

    url: str
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    batch_size: int = Field(100, ge=1, le=10_000)
    flush_interval: float = Field(2.0, gt=0)  # seconds a record waits at most for its batch to fill
    max_retries: int = Field(5, ge=0, le=20)  # a failed batch, retried with backoff, then counted and dropped
    timeout: float = Field(10.0, gt=0)
    allow_private_network: bool = False  # a collector on loopback or a private network

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from anygate.netguard import validate_url_shape

        validate_url_shape(value)
        return value

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)
        return value


class ExportSettings(Strict):
    """One JSON record per generation, to ``http`` and/or appended to ``file`` (JSON lines); a bounded queue
    per sink (``queue_size``), dropping and counting past it. Prompt and completion text only with
    ``include_text``, and then only for the keys ``text_keys`` names (key ids or aliases; ``*``: every key)."""

    http: ExportHttp | None = None
    file: Path | None = None
    queue_size: int = Field(10_000, ge=1)
    include_text: bool = False
    text_keys: list[str] = Field(default_factory=list)


class AlertSettings(Strict):
    """Budget alerts: one JSON POST to ``url`` (with ``headers``) per threshold (a fraction of a budget's
    limit) crossed per window. The default for every budget holder without ``alerts`` of its own."""

    url: str = Field(min_length=1, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    thresholds: list[Annotated[float, Field(gt=0, le=10)]] = Field(default_factory=lambda: [0.8, 1.0], min_length=1)
    allow_private_network: bool = False


OtelSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class OtelSettings(Strict):
    """OpenTelemetry traces (the ``otel`` extra), from the standard ``OTEL_*`` variables or ``otel:``.

    On when ``enabled`` (in the file), or when the environment names an OTLP endpoint or the ``otlp``
    exporter; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off whatever else says."""

    enabled: bool = False
    endpoint: str = "http://localhost:4318/v1/traces"  # the OTLP/HTTP traces URL, whole
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: float = Field(10.0, gt=0)  # seconds for one export
    service_name: str = "anygate"
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    sampler: OtelSampler = "parentbased_always_on"
    sampler_ratio: float = Field(1.0, ge=0, le=1)
    schedule_delay: float = Field(5.0, gt=0)  # seconds between batch exports
    max_queue_size: int = Field(2048, ge=1)
    max_export_batch_size: int = Field(512, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from anygate.netguard import validate_url_shape

        validate_url_shape(value)
        return value


class RequestLimits(Strict):
    """What a client may send, and how slowly (answered 408 or 431 by the server layer, ``protocol.py``)."""

    header_timeout: float = Field(10.0, gt=0)  # seconds for the request line and headers
    body_timeout: float = Field(60.0, gt=0)  # seconds for the body, pushed back by what arrives
    body_min_rate: float = Field(500.0, gt=0)  # bytes of body that push the body deadline back one second
    max_header_bytes: int = Field(64 * 1024, ge=1024)  # the request line and header fields together
    max_headers: int = Field(100, ge=1)


class RoutingSettings(Strict):
    """Retries, fallbacks and health checks (docs/resilience.md)."""

    # balanced: weighted choice preferring the fewest requests in flight; ordered: the first healthy
    # deployment in configured order. Either way, after a failure the next follows the configured order.
    strategy: Literal["balanced", "ordered"] = "balanced"
    max_attempts: int = Field(6, ge=1, le=50)  # per deployment group (the model's own, each fallback's)
    retry_deadline: float = Field(60.0, gt=0)  # seconds until a request's answer must have started
    max_retry_after_wait: float = Field(10.0, ge=0)
    health_check_interval: float = Field(60.0, ge=0)
    client_timeout_header: bool = False


class QuotaSource(Strict):
    id: Annotated[str, Field(pattern=SLUG)]
    base_url: str
    quota_path: str = "/quota"
    label: str | None = None
    format: QuotaFormat = "neutral"
    api_key: SecretStr | None = None
    # The quota client runs on the user's machine against gateways the user lists (often on loopback or a
    # LAN): private networks are allowed unless refused here; link-local and metadata never are.
    allow_private_network: bool = True


class OidcSettings(Strict):
    """Sign-in to the console with an OpenID Connect issuer (authorization code with PKCE): docs/console.md.

    Who may sign in and as what, decided from the ID token's claims at sign-in: a person in
    ``admin_groups`` (or matching ``admin_claims``) is an admin; otherwise one with a ``team_claim`` value
    acts as that team's shared user record, and one in ``user_groups`` (or matching ``user_claims``) as
    a user record of their own, made at first sign-in; with ``allow_everyone`` any person the issuer
    vouches for does. Anyone else is refused. ``*_claims`` map a claim to the values that match it (a
    list claim matches when it holds one of them)."""

    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(None, repr=False)  # absent: a public client (PKCE alone)
    display_name: str | None = None  # the button says "Sign in with <display_name>"; default: the issuer's host
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # The callback URL registered at the issuer (``https://gateway.example.com/auth/oidc/callback``); when
    # unset it is made from the request's own scheme and host.
    redirect_url: str | None = None
    user_claim: str = "email"  # names a person's user record (falling back to ``name``, then ``sub``)
    groups_claim: str = "groups"
    admin_groups: list[str] = Field(default_factory=list)
    admin_claims: dict[str, list[str]] = Field(default_factory=dict)
    user_groups: list[str] = Field(default_factory=list)
    user_claims: dict[str, list[str]] = Field(default_factory=dict)
    team_claim: str | None = None
    allow_everyone: bool = False
    # What a user record made at first sign-in starts with (the shapes of a user's ``budget``/``limits``).
    new_user_budget: dict[str, Any] | None = None
    new_user_limits: dict[str, Any] | None = None
    session_hours: float = Field(8.0, gt=0, le=24 * 30)
    allow_private_network: bool = False  # an issuer on loopback or a private network (tests, a lab)
    timeout: float = Field(10.0, gt=0)  # seconds for one request to the issuer

    @field_validator("issuer", "redirect_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from anygate.netguard import validate_url_shape

        if value is not None:
            validate_url_shape(value)
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid'")
        if any(not scope or " " in scope for scope in value):
            raise ValueError("each scope is one word")
        return value

    @property
    def issuer_url(self) -> str:
        """The issuer as ID tokens name it: the configured URL without a trailing slash."""
        return self.issuer.rstrip("/")


class Settings(Strict):
    """Every setting, validated once and frozen: built by the CLI (or a test) and handed to ``create_app``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    drain_grace: float = Field(30.0, ge=0)  # seconds SIGTERM lets open requests and streams finish
    request_limits: RequestLimits = Field(default_factory=RequestLimits)
    config_file: Path | None = None
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "anygate")
    database_url: str | None = None
    redis_url: str | None = None
    admin_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "auto"
    no_auth: bool = False
    providers: list[ProviderConfig] = Field(default_factory=list)
    provider_aliases: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    default_provider: str | None = None
    quota_sources: list[QuotaSource] = Field(default_factory=list)
    export: ExportSettings | None = None  # per-generation telemetry records (docs/observability.md)
    alerts: AlertSettings | None = None  # budget alerts' default webhook (docs/budgets-and-quotas.md)
    otel: OtelSettings = Field(default_factory=OtelSettings)  # OpenTelemetry traces (docs/observability.md)
    oidc: OidcSettings | None = None  # console sign-in with an OpenID Connect issuer (docs/console.md)
    # Cloudflare AI Gateway's host, and a gateway every preset it fronts goes through (``CF_AI_GATEWAY_*``).
    cloudflare_ai_gateway: CloudflareGateway = Field(default_factory=CloudflareGateway)
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    # The largest SSE event an upstream may send; a larger one ends the stream with an error event.
    max_sse_event_bytes: int = Field(8 * 1024 * 1024, gt=0)
    # The longest answer an upstream may send that is read whole (not streamed): past it, a 502.
    max_response_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # Seconds of upstream silence after which a stream translated to the Anthropic Messages API gets a
    # ``ping`` event (clients and proxies between them may drop a connection that stays quiet).
    stream_keepalive_interval: float = Field(5.0, gt=0)
    metrics_public: bool = True
    discovery_interval: float = Field(300.0, gt=0)
    store_poll_interval: float = Field(1.0, gt=0)  # seconds between checks of the store's revision
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    # Budget and rate-limit counters: memory (one process), sql (workers sharing the database), redis
    # (replicas); auto picks redis when redis_url is set, sql with several workers, else memory.
    limiter: Literal["auto", "memory", "sql", "redis"] = "auto"
    # ``provider/model`` (or ``provider/*``) → price.
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    # A hard USD budget refuses a model with no known price (403 price_unknown); true lets it through
    # (its spend then counts as zero against the budget).
    allow_unpriced_under_usd_budget: bool = False
    quota_poll_interval: float = Field(60.0, ge=60.0)
    ledger_interval: float = Field(1.0, gt=0)  # seconds between usage-ledger batch writes
    # Text of long prompt parts whose token counts are remembered (a coding agent's conversation, sent again
    # every turn, is then counted once): about 80 agents' conversations of 200 KB by default.
    remembered_prompt_bytes: int = Field(16 * 1024 * 1024, ge=0)
    # Provider-key environment variables (``<ID>_API_KEY``) are looked up here, at start, once.
    provider_key_env: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    # Every ``*_API_KEY`` variable of the environment, by name: the quota client's first key source.
    api_key_env: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    # ``${VAR}`` references of the config file whose variable was unset or empty (and had no default):
    # ``(where, name)``, ``("providers.1.api_key", "CAMPUS_KEY")``; ``anygate serve`` warns about each.
    empty_variables: tuple[tuple[str, str], ...] = ()
    # The user's own config (``$XDG_CONFIG_HOME/anygate/config.yaml``): trusted for quota-source keys.
    user_config_file: Path = Field(default_factory=lambda: Path.home() / ".config" / "anygate" / "config.yaml")
    # Egress: HTTPS_PROXY, HTTP_PROXY and NO_PROXY (read at start, once), followed unless turned off here; a
    # provider's own ``proxy`` wins over them.
    proxy_from_environment: bool = True
    environment_proxies: EnvironmentProxies = Field(default_factory=EnvironmentProxies, repr=False)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        ids = [p.id for p in self.providers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate provider id(s): {', '.join(duplicates)}")
        known = set(ids) | set(self.provider_aliases)
        if self.default_provider is not None and self.default_provider not in known:
            raise ValueError(f"default_provider '{self.default_provider}' is not a configured provider")
        if self.no_auth and not is_loopback_host(self.host):
            raise ValueError("--no-auth is only allowed when listening on a loopback host")
        return self

    def provider_key(self, provider: ProviderConfig) -> str | None:
        """The configured key: the provider's own ``api_key``, else ``<ID>_API_KEY``."""
        if provider.api_key is not None and provider.api_key.get_secret_value():
            return provider.api_key.get_secret_value()
        from_env = self.provider_key_env.get(provider.id)
        return from_env.get_secret_value() if from_env is not None else None

    def routed(self, provider: ProviderConfig) -> ProviderConfig:
        """The provider as its requests go: through the gateway-wide Cloudflare AI Gateway settings."""
        return provider.through_gateway(self.cloudflare_ai_gateway)

    def proxy_environment(self) -> ProxyEnvironment | None:
        """The environment's proxies, when followed (None: every request goes directly)."""
        return self.environment_proxies.parsed() if self.proxy_from_environment else None

    def proxy_for(self, provider: ProviderConfig) -> Proxy | None:
        """The proxy a provider's requests go through: its own ``proxy``, else the environment's for its URL."""
        if provider.proxy is not None:
            return provider.proxy.proxy()
        environment = self.proxy_environment()
        return environment.for_url(provider.base_url or "") if environment is not None else None

    @property
    def limiter_backend(self) -> Literal["memory", "sql", "redis"]:
        if self.limiter != "auto":
            return self.limiter
        if self.redis_url:
            return "redis"
        return "sql" if self.workers > 1 else "memory"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'anygate.db'}"


def describe_errors(exc: ValidationError) -> str:
    """A validation failure by field names and reasons only: a value (a stored header, say) may be a secret."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors(include_input=False)
    )


def is_loopback_host(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------------------------------------- loading


def read_environment(dotenv_path: Path = Path(".env")) -> dict[str, str]:
    """The process environment over ``.env`` in the working directory (the process wins)."""
    merged = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path.is_file() else {}
    merged.update(os.environ)
    return merged


def environment_with(values: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with ``values`` set: for a process anygate starts of itself."""
    return {**os.environ, **values}


def load_settings(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from flags, the environment and the config file it names; raise ConfigError."""
    env = read_environment() if environ is None else dict(environ)
    given_flags = {k: v for k, v in (flags or {}).items() if v is not None}
    config_path = given_flags.get("config_file") or env.get("ANYGATE_CONFIG")
    file_values, empty_variables = read_config_file(Path(config_path), env) if config_path else ({}, [])
    origin = str(config_path) if config_path else "environment"
    env_fields = anygate_env_values(env)
    merged = merge_layers(file_values, nested(env_fields), given_flags)
    if config_path:
        merged["config_file"] = Path(config_path)
        merged["empty_variables"] = tuple(empty_variables)
    else:
        apply_zero_config(merged, env)
    otel = otel_from_environment(env)
    if otel:
        merged["otel"] = {**(merged.get("otel") or {}), **otel}
    if "PREFERRED_PROVIDER" in env:
        merged["default_provider"] = preferred_provider(env["PREFERRED_PROVIDER"], merged)
    merged.setdefault("data_dir", default_data_dir(env))
    merged.setdefault("user_config_file", default_user_config_file(env))
    sources = value_sources(env, given_flags, merged)
    for provider in merged.get("providers") or []:
        if isinstance(provider, dict):
            provider.pop(ENV_SOURCES_KEY, None)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, origin, sources, merged)) from exc
    provider_keys = {
        p.id: SecretStr(env[key_env_name(p.id)]) for p in settings.providers if env.get(key_env_name(p.id))
    }
    api_keys = {name: SecretStr(value) for name, value in env.items() if name.endswith("_API_KEY") and value}
    proxies = environment_proxies(env)
    return settings.model_copy(
        update={"provider_key_env": provider_keys, "api_key_env": api_keys, "environment_proxies": proxies}
    )


def environment_proxies(env: Mapping[str, str]) -> EnvironmentProxies:
    """``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (the upper-case name first, then the lower-case one),
    checked now: a proxy URL that is none stops the start, naming its variable (never its value)."""
    values: dict[str, Any] = {}
    for field, name in (("https", "HTTPS_PROXY"), ("http", "HTTP_PROXY")):
        raw = env.get(name) or env.get(name.lower())
        if not raw:
            continue
        try:
            parse_proxy(raw)
        except UnsafeURL as exc:
            raise ConfigError(f"environment: {name} is not a proxy URL ({exc})") from None
        values[field] = raw
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    values["no_proxy"] = [entry.strip() for entry in no_proxy.split(",") if entry.strip()]
    return EnvironmentProxies(**values)


def default_user_config_file(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".config"
    return base / "anygate" / "config.yaml"


def default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".local" / "share"
    return base / "anygate"


ANYGATE_ENV_FIELDS = {
    "ANYGATE_DATA_DIR": "data_dir",
    "ANYGATE_DATABASE_URL": "database_url",
    "ANYGATE_REDIS_URL": "redis_url",
    "ANYGATE_ADMIN_KEY": "admin_key",
    "ANYGATE_SECRET_KEY": "secret_key",
    "ANYGATE_HOST": "host",
    "ANYGATE_PORT": "port",
    "ANYGATE_WORKERS": "workers",
    "ANYGATE_DRAIN_GRACE": "drain_grace",
    "ANYGATE_HEADER_TIMEOUT": "request_limits.header_timeout",
    "ANYGATE_BODY_TIMEOUT": "request_limits.body_timeout",
    "ANYGATE_BODY_MIN_RATE": "request_limits.body_min_rate",
    "ANYGATE_MAX_HEADER_BYTES": "request_limits.max_header_bytes",
    "ANYGATE_MAX_HEADERS": "request_limits.max_headers",
    "ANYGATE_LOG_LEVEL": "log_level",
    "ANYGATE_LOG_FORMAT": "log_format",
    "ANYGATE_NO_AUTH": "no_auth",
    "ANYGATE_LIMITER": "limiter",
    "ANYGATE_MAX_SSE_EVENT_BYTES": "max_sse_event_bytes",
    "ANYGATE_MAX_RESPONSE_BYTES": "max_response_bytes",
    "ANYGATE_REMEMBERED_PROMPT_BYTES": "remembered_prompt_bytes",
    "ANYGATE_PROXY_FROM_ENVIRONMENT": "proxy_from_environment",
}


# The plain ``LOG_LEVEL`` (seed 003) speaks the usual dialects of level names; ``ANYGATE_LOG_LEVEL`` wins over it.
PLAIN_LOG_LEVELS = {"trace": "debug", "warn": "warning", "critical": "error", "fatal": "error"}


# Cloudflare AI Gateway for every preset it fronts (the names seed 004's users have set).
CLOUDFLARE_ENV_FIELDS = {
    "CF_AI_GATEWAY_ACCOUNT_ID": "cloudflare_ai_gateway.account_id",
    "CF_AI_GATEWAY_ID": "cloudflare_ai_gateway.gateway_id",
    "CF_AI_GATEWAY_TOKEN": "cloudflare_ai_gateway.token",
    "CF_AI_GATEWAY_HOST": "cloudflare_ai_gateway.host",
}


def env_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The (dotted) field each set variable sets, and the variable: ``{"port": "ANYGATE_PORT"}``."""
    fields = {**ANYGATE_ENV_FIELDS, **CLOUDFLARE_ENV_FIELDS}
    variables = {field: name for name, field in fields.items() if env.get(name)}
    if "log_level" not in variables and (env.get("LOG_LEVEL") or "").strip():
        variables["log_level"] = "LOG_LEVEL"
    return variables


def anygate_env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``ANYGATE_*``, ``CF_AI_GATEWAY_*`` and ``LOG_LEVEL`` variables set, by the field each sets."""
    values: dict[str, Any] = {field: env[name] for field, name in env_variables(env).items()}
    if env_variables(env).get("log_level") == "LOG_LEVEL":
        plain = env["LOG_LEVEL"].strip().lower()
        values["log_level"] = PLAIN_LOG_LEVELS.get(plain, plain)
    return values


def nested(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    values: dict[str, Any] = {}
    for field, value in fields.items():
        *sections, name = field.split(".")
        target = values
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return values


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers over earlier ones; a section (a mapping) is merged key by key, one level deep."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            earlier = merged.get(key)
            merged[key] = {**earlier, **value} if isinstance(value, dict) and isinstance(earlier, dict) else value
    return merged


def read_config_file(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The file's settings with ``${VAR}`` expanded, and the references whose variable was unset or empty."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        # A relative path is read from the current folder: say which file that was.
        tried = "" if path.is_absolute() else f", tried {path.absolute()}"
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}{tried})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of settings")
    expanded = expand_variables(raw, env)
    assert isinstance(expanded, dict)
    return expanded, list(empty_references(raw, env))


VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_variables(value: Any, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML document."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [expand_variables(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_variables(v, env) for k, v in value.items()}
    return value


def empty_references(value: Any, env: Mapping[str, str], where: str = "") -> Iterator[tuple[str, str]]:
    """``(location, name)`` of each ``${VAR}`` (without a default) whose variable is unset or empty."""
    if isinstance(value, str):
        for match in VARIABLE.finditer(value):
            if match.group(2) is None and not env.get(match.group(1)):
                yield where, match.group(1)
    elif isinstance(value, list | dict):
        items = enumerate(value) if isinstance(value, list) else value.items()
        for key, item in items:
            yield from empty_references(item, env, f"{where}.{key}" if where else str(key))


def value_sources(
    env: Mapping[str, str], flags: Mapping[str, Any], merged: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Where a setting came from when not from the config file: its variable or its flag.

    Keys are dotted locations (``port``, ``providers.0.timeout``) as pydantic reports them."""
    sources = {field: f"environment variable {name}" for field, name in env_variables(env or {}).items()}
    sources.update({field: "--" + field.replace("_", "-") for field in flags if field != "config_file"})
    for index, provider in enumerate((merged or {}).get("providers") or []):
        for field, variable in (provider.get(ENV_SOURCES_KEY) or {}).items() if isinstance(provider, dict) else ():
            sources[f"providers.{index}.{field}"] = f"environment variable {variable}"
    return sources


def describe_validation_error(
    exc: ValidationError,
    origin: str,
    sources: Mapping[str, str] | None = None,
    merged: Mapping[str, Any] | None = None,
) -> str:
    lines = [f"{origin}: invalid configuration"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        source = source_of(error["loc"], sources or {})
        provider = provider_named_at(error["loc"], merged or {})
        lines.append(
            f"  {location}: {message}"
            + (f" (provider '{provider}')" if provider else "")
            + (f" (from {source})" if source else "")
        )
    return "\n".join(lines)


def source_of(location: tuple[int | str, ...], sources: Mapping[str, str]) -> str | None:
    """The most specific known source of a location: ``providers.0.timeout``, then ``providers.0``..."""
    parts = [str(part) for part in location]
    for length in range(len(parts), 0, -1):
        source = sources.get(".".join(parts[:length]))
        if source is not None:
            return source
    return None


def provider_named_at(location: tuple[int | str, ...], merged: Mapping[str, Any]) -> str | None:
    """The id of the provider an error is in (``providers.3`` says little in a long file)."""
    if len(location) < 2 or location[0] != "providers" or not isinstance(location[1], int):
        return None
    providers = merged.get("providers") or []
    entry = providers[location[1]] if location[1] < len(providers) else None
    provider_id = entry.get("id") if isinstance(entry, dict) else None
    return provider_id if isinstance(provider_id, str) else None


# ------------------------------------------------------------------------- OpenTelemetry's variables

OTEL_SAMPLERS = frozenset(get_args(OtelSampler))


def otel_from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The standard ``OTEL_*`` variables (the traces-specific one over the general one) as ``otel`` fields.

    Durations are milliseconds there (the specification's unit), seconds here; an unknown or unsupported
    value stops the start naming its variable."""
    values: dict[str, Any] = {}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or otlp_signal_url(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter not in ("", "otlp", "none"):
        raise ConfigError(f"environment: OTEL_TRACES_EXPORTER '{exporter}' is not supported (otlp or none)")
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    if protocol not in ("", "http/protobuf"):
        raise ConfigError(f"environment: OTLP protocol '{protocol}' is not supported (http/protobuf)")
    if endpoint:
        values["endpoint"] = endpoint
    if endpoint or exporter == "otlp":
        values["enabled"] = True
    if exporter == "none" or env_flag(env, "OTEL_SDK_DISABLED", False):
        values["enabled"] = False
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    if headers:
        values["headers"] = otel_pairs(headers, "OTEL_EXPORTER_OTLP_HEADERS")
    attributes = otel_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES") or "", "OTEL_RESOURCE_ATTRIBUTES")
    if attributes:
        values["resource_attributes"] = attributes
    service = env.get("OTEL_SERVICE_NAME") or attributes.get("service.name")
    if service:
        values["service_name"] = service
    values.update(otel_sampling(env))
    for name, field in (
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "timeout"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "timeout"),
        ("OTEL_BSP_SCHEDULE_DELAY", "schedule_delay"),
    ):
        if env.get(name) and field not in values:
            values[field] = env_number(env, name, 0.0) / 1000
    for name, field in (
        ("OTEL_BSP_MAX_QUEUE_SIZE", "max_queue_size"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "max_export_batch_size"),
    ):
        if env.get(name):
            values[field] = env_integer(env, name, 0)
    return values


def otlp_signal_url(base: str | None) -> str | None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` is the base every signal's path goes under: ``<base>/v1/traces``."""
    return base.rstrip("/") + "/v1/traces" if base else None


def otel_pairs(raw: str, name: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` (values percent-encoded, as the specification has them)."""
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, found, value = item.partition("=")
        if not found or not key.strip():
            raise ConfigError(f"environment: {name} must be key=value pairs separated by commas")
        pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def otel_sampling(env: Mapping[str, str]) -> dict[str, Any]:
    sampler = (env.get("OTEL_TRACES_SAMPLER") or "").strip().lower()
    if not sampler:
        return {}
    if sampler not in OTEL_SAMPLERS:
        raise ConfigError(
            f"environment: OTEL_TRACES_SAMPLER '{sampler}' is not supported ({', '.join(sorted(OTEL_SAMPLERS))})"
        )
    values: dict[str, Any] = {"sampler": sampler}
    if sampler.endswith("traceidratio") and env.get("OTEL_TRACES_SAMPLER_ARG"):
        values["sampler_ratio"] = env_number(env, "OTEL_TRACES_SAMPLER_ARG", 1.0)
    return values


# ------------------------------------------------------------------------- seed 003: zero-config env


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in TRUTHY:
        return True
    if lowered in FALSY:
        return False
    raise ConfigError(f"environment: {name} must be true or false, not '{raw}'")


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment: {name} must be a number, not '{raw}'") from None


def env_integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment: {name} must be a whole number, not '{raw}'") from None


def env_cloudflare_access(env: Mapping[str, str]) -> dict[str, str] | None:
    """``CF_ACCESS_CLIENT_ID`` and ``CF_ACCESS_CLIENT_SECRET`` for the env provider: both, or neither."""
    client_id, secret = env.get("CF_ACCESS_CLIENT_ID"), env.get("CF_ACCESS_CLIENT_SECRET")
    if not client_id and not secret:
        return None
    if not client_id or not secret:
        given, missing = ("CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET")[:: 1 if client_id else -1]
        raise ConfigError(f"environment: {given} is set without {missing}: a Cloudflare Access token needs both")
    return {"client_id": client_id, "client_secret": secret}


def env_list(env: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated variable as its non-empty items, in order, each once: ``"a, b,,a"`` → ``[a, b]``."""
    items = (item.strip() for item in (env.get(name) or "").split(","))
    return list(dict.fromkeys(item for item in items if item))


def env_headers(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("OPENAI_COMPATIBLE_CUSTOM_HEADERS")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"environment: OPENAI_COMPATIBLE_CUSTOM_HEADERS is not valid JSON ({exc.msg})") from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ConfigError("environment: OPENAI_COMPATIBLE_CUSTOM_HEADERS must be a JSON object of strings")
    return parsed


def apply_zero_config(merged: dict[str, Any], env: Mapping[str, str]) -> None:
    """Seed 003: ``OPENAI_COMPATIBLE_*`` (or legacy ``OPENROUTER_*``) and ``OLLAMA_*`` define providers."""
    providers: list[dict[str, Any]] = list(merged.get("providers") or [])
    compatible = env_compatible_provider(env)
    if compatible is not None:
        providers.append(compatible)
        # Both names reach the env-defined provider, whichever id it has (seed 003 used both).
        other = ENV_PROVIDER_ID if compatible["id"] == LEGACY_PROVIDER_ID else LEGACY_PROVIDER_ID
        merged["provider_aliases"] = {other: compatible["id"]}
    if env_flag(env, "OLLAMA_ENABLED", False):
        base = env.get("OLLAMA_BASE_URL") or "http://localhost:11434"
        base = base.rstrip("/")
        providers.append(
            {
                "id": "ollama",
                "type": "ollama",
                "base_url": base if base.endswith("/v1") else base + "/v1",
                ENV_SOURCES_KEY: {"base_url": "OLLAMA_BASE_URL"},
            }
        )
    merged["providers"] = providers


def env_compatible_provider(env: Mapping[str, str]) -> dict[str, Any] | None:
    if not env_flag(env, "OPENAI_COMPATIBLE_ENABLED", True):
        return None
    key = env.get("OPENAI_COMPATIBLE_API_KEY")
    legacy_key = env.get("OPENROUTER_API_KEY")
    explicit_url = env.get("OPENAI_COMPATIBLE_BASE_URL")
    if not key and not legacy_key and not explicit_url:
        return None
    provider_id = ENV_PROVIDER_ID if key or not legacy_key else LEGACY_PROVIDER_ID
    base_url = explicit_url or (env.get("OPENROUTER_BASE_URL") if provider_id == LEGACY_PROVIDER_ID else None)
    base_url = (base_url or DEFAULT_OPENROUTER_URL).rstrip("/")
    preset_type = preset_for_url(base_url)
    provider: dict[str, Any] = {
        "id": provider_id,
        "type": preset_type,
        "base_url": base_url,
        "api_key": key or legacy_key,
        "name": env.get("OPENAI_COMPATIBLE_PROVIDER_NAME") or detect_provider_name(base_url),
        "headers": env_headers(env),
        "timeout": env_number(env, "OPENAI_COMPATIBLE_TIMEOUT", 30.0),
        "max_retries": env_integer(env, "OPENAI_COMPATIBLE_MAX_RETRIES", 3),
        # The operator's own environment names this URL: a backend on loopback or a LAN is intended.
        "allow_private_network": True,
        ENV_SOURCES_KEY: {
            "base_url": "OPENAI_COMPATIBLE_BASE_URL"
            if explicit_url or provider_id == ENV_PROVIDER_ID
            else "OPENROUTER_BASE_URL",
            "api_key": "OPENAI_COMPATIBLE_API_KEY" if key else "OPENROUTER_API_KEY",
            "name": "OPENAI_COMPATIBLE_PROVIDER_NAME",
            "headers": "OPENAI_COMPATIBLE_CUSTOM_HEADERS",
            "timeout": "OPENAI_COMPATIBLE_TIMEOUT",
            "max_retries": "OPENAI_COMPATIBLE_MAX_RETRIES",
            "default_model": "OPENAI_COMPATIBLE_DEFAULT_MODEL",
            "models": "OPENAI_COMPATIBLE_MODELS",
        },
    }
    access = env_cloudflare_access(env)
    if access is not None:
        provider["cloudflare_access"] = access
        provider[ENV_SOURCES_KEY]["cloudflare_access"] = "CF_ACCESS_CLIENT_ID"
    models = env_list(env, "OPENAI_COMPATIBLE_MODELS")
    if models:
        provider["models"] = models  # used when discovery fails, merged with it otherwise
    if env.get("OPENAI_COMPATIBLE_DEFAULT_MODEL"):
        provider["default_model"] = env["OPENAI_COMPATIBLE_DEFAULT_MODEL"]
    if preset_type == "azure":
        provider["auth"] = "api-key"
    if not (key or legacy_key):
        provider["auth"] = "none"  # a base URL alone: a local backend that takes no key (vLLM, llama.cpp)
    return provider


def preset_for_url(base_url: str) -> str:
    """The preset whose host the URL is on, so an env-defined OpenRouter keeps its quota endpoint."""
    name = detect_provider_name(base_url)
    for preset in PRESETS.values():
        if preset.name == name and preset.hosts:
            return preset.id
    return "custom"


def preferred_provider(raw: str, merged: Mapping[str, Any]) -> str | None:
    value = raw.strip().lower()
    ids = [p["id"] if isinstance(p, dict) else p.id for p in merged.get("providers") or []]
    if value in ("", "auto"):
        return ids[0] if ids else None
    if value in (ENV_PROVIDER_ID, LEGACY_PROVIDER_ID):
        for candidate in (value, ENV_PROVIDER_ID, LEGACY_PROVIDER_ID):
            if candidate in ids:
                return candidate
        return None
    if value in ids:
        return value
    raise ConfigError(f"environment: PREFERRED_PROVIDER '{raw}' is not a configured provider ({', '.join(ids)})")
