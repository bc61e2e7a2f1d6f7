"""The shapes of anygate's answers, for the OpenAPI document (``api/openapi.py``) only.

Handlers build their answers as plain dicts (no pydantic model per request); these models say what those
dicts hold, and the schemathesis test checks every answer against them. Fields a shape may grow later are
allowed: extra members are never an error for a client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------ health and models


class Health(View):
    status: Literal["ok"]


class Ready(View):
    """The public answer is ``status`` alone; the admin key also sees the checks and the providers."""

    status: Literal["ready"]
    checks: dict[str, str] | None = Field(None, description="Each dependency: `ok` or why not (admin key).")
    providers: dict[str, dict[str, Any]] | None = Field(None, description="Each provider's state (admin key).")


class NotReady(View):
    """The public answer while a dependency does not answer (the admin key gets an error naming each)."""

    status: Literal["not_ready"]


class ModelObject(View):
    id: str = Field(description="`<provider>/<model>`")
    object: Literal["model"]
    created: int
    owned_by: str
    context_length: int | None = None
    pricing: dict[str, Any] | None = None
    name: str | None = None


class ModelList(View):
    object: Literal["list"]
    data: list[ModelObject]


class ProviderSummary(View):
    id: str
    name: str | None
    type: str | None
    provider_type: str | None = Field(description="The same as `type` (the name older clients read).")
    base_url: str | None
    api_base: str | None = Field(description="The same as `base_url` (the name older clients read).")
    configured: bool
    auth: str | None = Field(None, description="How the key is sent: `bearer`, `api-key`, `x-api-key` or `none`.")
    key_set: bool | None = Field(None, description="Whether a key is sent (false for `auth: none`).")
    healthy: bool | None
    default: bool
    models: list[str]


class ProviderList(View):
    object: Literal["list"]
    data: list[ProviderSummary]
    default_provider: str | None


class ProviderModel(ModelObject):
    price: dict[str, Any] | None = Field(
        None, description="USD per million tokens (`input`, `output`) and its `origin`; null when unknown."
    )


class ProviderModels(View):
    object: Literal["list"]
    data: list[ProviderModel]
    provider: str
    source: str = Field(description="`discovered`, `configured`, `last-known` or `unknown`")
    error: str | None = Field(None, description="Why discovery failed, when it did.")


class ProviderCheck(View):
    id: str
    name: str | None
    configured: bool
    healthy: bool
    latency_ms: float | None
    checked: str = Field("models", description="What was checked: `models`, the provider's model list.")
    key_sent: bool = Field(description="Whether the check carried the provider's key.")
    error: str | None = None


class HealthCheckReport(View):
    status: Literal["completed"]
    providers: list[ProviderCheck]


# ------------------------------------------------------------------------------ providers


class ProviderView(View):
    """A provider as the management API shows it: its secrets as `"***"`."""

    id: str
    name: str | None
    type: str | None
    provider_type: str | None = Field(description="The same as `type` (the name older clients read).")
    base_url: str | None
    api_base: str | None = Field(description="The same as `base_url` (the name older clients read).")
    configured: bool
    healthy: bool | None
    default: bool
    models: list[str]
    origin: Literal["file", "env", "store"]
    read_only: bool
    api_key: Literal["***"] | None = None
    api_keys: list[Literal["***"]] = []
    cloudflare_access: dict[str, str] | None = Field(
        None, description='The Cloudflare Access service token: `client_id`, and `client_secret` as `"***"`.'
    )
    proxy: dict[str, Any] | None = Field(
        None, description='The provider\'s own egress proxy: `url`, and `headers` with credentials as `"***"`.'
    )
    unavailable: str | None = Field(None, description="Why a stored provider is out of routing, when it is.")


class Deleted(View):
    id: str
    deleted: Literal[True]


class ProbeResult(View):
    provider: str
    checked_at: int
    auth: str = Field(description="How a key would be sent: `bearer`, `api-key`, `x-api-key` or `none`.")
    key_sent: bool = Field(
        description="Whether the checks carried a key (a check passed without one says nothing of a key)."
    )
    models: dict[str, Any] | None = None
    model: str | None = None
    chat: dict[str, Any]
    capabilities: dict[str, bool]


# ------------------------------------------------------------------------------ keys and users


class KeyView(View):
    """A key as the API shows it: never its secret, only its first characters."""

    id: str
    alias: str
    key_prefix: str
    user_id: str | None
    role: Literal["admin", "team_admin", "user"]
    models: list[str] | None
    providers: list[str] | None
    expires_at: str | None
    revoked_at: str | None
    created_at: str | None
    previous_secret_valid_until: str | None
    budget: dict[str, Any] | None = Field(description="The first of budgets, in the single-budget shape")
    budgets: list[dict[str, Any]]
    limits: dict[str, Any] | None
    alerts: dict[str, Any] | None
    status: Literal["active", "expired", "revoked"]
    warnings: list[str] | None = Field(
        None,
        description="On create and update only: an alias another live key of the same owner has, or an allowlist "
        "pattern that matches nothing served now (the key is made; it cannot use that pattern until a provider "
        "serves what it names).",
    )


class KeyCreated(KeyView):
    key: str = Field(description="The secret (`sk-ag-...`), in this answer only.")


class KeyRotated(KeyCreated):
    previous_key_expires_at: str | None


class Caller(View):
    """Who asked: the console tells an admin, a team admin and a key holder apart by ``role``."""

    key_id: str = Field(description="The calling key's id (`admin` for the admin key).")
    role: Literal["admin", "team_admin", "user"]
    user_id: str | None
    team_id: str | None


class KeyList(View):
    """The keys the caller manages: every key (admin), its team's and its own family (team admin), or the
    calling key and the keys made from it (any other key)."""

    object: Literal["list"]
    data: list[KeyView]
    caller: Caller


class UserView(View):
    id: str
    name: str
    budget: dict[str, Any] | None = Field(description="The first of budgets, in the single-budget shape")
    budgets: list[dict[str, Any]]
    limits: dict[str, Any] | None
    team_id: str | None
    alerts: dict[str, Any] | None
    created_at: str | None


class UserDetail(UserView):
    keys: list[KeyView]


class UserList(View):
    object: Literal["list"]
    data: list[UserView]


class UserWithKey(View):
    id: str
    name: str
    token: str = Field(description="The new key's secret, in this answer only.")
    key_id: str


class UsersOnly(View):
    users: list[UserView]


class BudgetUse(View):
    budget: dict[str, Any]
    used: dict[str, float]
    resets_at: str | None


class TeamView(View):
    id: str
    name: str
    budgets: list[dict[str, Any]]
    limits: dict[str, Any] | None
    models: list[str] | None
    providers: list[str] | None
    alerts: dict[str, Any] | None
    created_at: str | None


class TeamDetail(TeamView):
    members: list[UserView]
    key_count: int
    spend: dict[str, float] = Field(description="All time: tokens, usd, requests")
    budget_use: list[BudgetUse] = Field(description="Each budget and what its current window used")


class TeamList(View):
    object: Literal["list"]
    data: list[TeamView]


class Enrolment(View):
    user_id: str
    name: str
    status: Literal["created", "kept"]
    key_id: str | None
    key: str | None = Field(description="The new key's secret, in this answer only (null: the user was kept)")


class RosterResult(View):
    team_id: str
    created: int
    kept: int
    data: list[Enrolment]


class ReissuedKey(View):
    user_id: str | None
    name: str = Field(description="The user's name")
    alias: str
    old_key_id: str = Field(description="The key revoked (with the keys it made)")
    key_id: str = Field(description="The key made in its place: same alias, allowlists, budgets, limits, expiry")
    key: str = Field(description="The new key's secret, in this answer only")


class ReissueResult(View):
    object: Literal["list"]
    reissued: int
    data: list[ReissuedKey]


class AuditEntryView(View):
    id: int
    at: str
    actor: dict[str, Any]
    action: str
    target: dict[str, Any]
    before: Any
    after: Any


class AuditList(View):
    object: Literal["list"]
    data: list[AuditEntryView]
    next_cursor: str | None


class LiteLLMTeamInfo(View):
    team_id: str
    team_info: dict[str, Any]
    keys: list[dict[str, Any]]
    team_memberships: list[dict[str, Any]]


class Credentials(View):
    """The caller's own provider keys, masked (`sk-ant-a...mnop`, or `"***"` for short ones)."""

    providers: dict[str, dict[str, str]] | None = None


# ------------------------------------------------------------------------------ quota and usage


class TokenQuota(View):
    limit: int | None
    used: int
    remaining: int | None
    resets_at: str | None


class CostQuota(View):
    currency: str
    limit: float | None
    used: float
    remaining: float | None


class BudgetUnit(View):
    limit: float
    used: float
    remaining: float


class BudgetStanding(View):
    """One budget the key counts against: whose (``key``, ``user``, ``team``), its window, and each unit."""

    scope: str
    id: str
    window: str
    mode: Literal["hard", "soft"]
    resets_at: str | None
    tokens: BudgetUnit | None
    cost: BudgetUnit | None
    requests: BudgetUnit | None


class NeutralQuota(View):
    key: str
    tokens: TokenQuota
    cost: CostQuota
    budgets: list[BudgetStanding] = Field(
        default_factory=list, description="Every budget the key counts against; tokens and cost show the tightest."
    )


class OpenRouterBudget(View):
    scope: str
    budget_id: str | None
    guardrail_id: str | None
    include_byok: bool
    limit_usd: float
    spend_usd: float
    remaining_usd: float
    reset_interval: Literal["daily", "weekly", "monthly"] | None
    resets_at: str | None


class OpenRouterRateLimit(View):
    requests: int
    interval: str
    note: str


class FreeModelRequests(View):
    limit: int
    remaining: int
    used: int


class OpenRouterKeyData(View):
    label: str
    limit: float | None
    limit_remaining: float | None
    limit_reset: str | None
    usage: float
    usage_daily: float
    usage_weekly: float
    usage_monthly: float
    byok_usage: float
    byok_usage_daily: float
    byok_usage_weekly: float
    byok_usage_monthly: float
    include_byok_in_limit: bool
    is_free_tier: bool
    is_management_key: bool
    is_provisioning_key: bool
    creator_user_id: str | None
    expires_at: str | None
    rate_limit: OpenRouterRateLimit
    allowed_data_regions: list[str]
    budgets: list[OpenRouterBudget]
    effective_budget: OpenRouterBudget | None
    free_model_daily_requests: FreeModelRequests
    organization_id: str | None
    workspace_id: str | None


class OpenRouterKey(View):
    data: OpenRouterKeyData


class OpenRouterCreditsData(View):
    total_credits: float
    total_usage: float


class OpenRouterCredits(View):
    data: OpenRouterCreditsData


class UsageReport(View):
    object: Literal["list"]
    group_by: list[str]
    data: list[dict[str, Any]]
    unpriced_models: list[dict[str, Any]]


class RequestRecord(View):
    """One request of the request log (a row of the usage ledger)."""

    request_id: str
    created_at: str = Field(description="When it was recorded: ISO 8601, UTC")
    route: str
    key_id: str
    user_id: str | None
    provider: str | None
    model: str | None
    status: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = Field(description="Of `input_tokens`: read from the prompt cache")
    cache_write_tokens: int = Field(description="Of `input_tokens`: written to the prompt cache")
    reasoning_tokens: int = Field(description="Of `output_tokens` (counted there once)")
    audio_tokens: int = Field(description="Of the input and output tokens together")
    image_tokens: int = Field(description="Of the input and output tokens together")
    usage_source: Literal["reported", "estimated"]
    cost_usd: float | None = Field(description="Null when the price is unknown")
    cost_source: Literal["upstream", "configured", "catalog"] | None
    latency_ms: float
    ttft_ms: float | None
    byok: bool
    error: str | None = Field(description="The failure's code, when the request failed")


class RequestList(View):
    object: Literal["list"]
    data: list[RequestRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class LiteLLMKeyRow(View):
    """LiteLLM's key row: every field of it (see docs/compatibility.md), the main ones typed here."""

    key_name: str | None
    key_alias: str | None
    spend: float
    total_spend: float
    max_budget: float | None
    expires: str | None
    models: list[str]
    user_id: str | None
    team_id: str | None
    max_parallel_requests: int | None
    metadata: dict[str, Any]
    tpm_limit: int | None
    rpm_limit: int | None
    budget_duration: str | None
    budget_reset_at: str | None
    blocked: bool | None
    status: Literal["active", "expired", "revoked"]
    created_at: str | None


class LiteLLMKeyInfo(View):
    key: str = Field(description="The key's anygate id (never its secret).")
    info: LiteLLMKeyRow


class LiteLLMUserRow(View):
    user_id: str
    user_alias: str | None
    spend: float
    max_budget: float | None
    models: list[str]
    teams: list[str]


class LiteLLMUserInfo(View):
    user_id: str | None
    user_info: LiteLLMUserRow | None
    keys: list[LiteLLMKeyRow]
    teams: list[dict[str, Any]]


# ------------------------------------------------------------------------------ the model routes


class ModelRequest(View):
    """What anygate reads of a model request; every other member goes to the upstream as sent (see
    OpenAI's API reference for each route's members)."""

    model: str = Field(min_length=1, description="`<provider>/<model>`, a model a provider lists, or an alias.")


class Usage(View):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class ChatCompletion(View):
    id: str
    object: str = Field(description="`chat.completion`")
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None


class Completion(View):
    id: str
    object: str = Field(description="`text_completion`")
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None


class EmbeddingList(View):
    object: Literal["list"]
    data: list[dict[str, Any]]
    model: str
    usage: Usage | None = None


class ResponseObject(View):
    id: str
    object: Literal["response"]
    created_at: int | float
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class ProxyAnswer(View):
    """The upstream's own answer, passed on as it came."""


# ------------------------------------------------------------------------------ the Anthropic Messages API


class AnthropicErrorDetail(View):
    type: str = Field(examples=["invalid_request_error"])
    message: str


class AnthropicError(View):
    """An error in Anthropic's shape (the Messages routes, and the model list asked with `anthropic-version`)."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class AnthropicTextBlock(View):
    type: Literal["text"]
    text: str


class AnthropicImageSource(View):
    type: Literal["base64", "url"]
    media_type: str | None = Field(None, description="With `base64`: `image/png`, `image/jpeg`, ...")
    data: str | None = Field(None, description="With `base64`: the image, base64-encoded.")
    url: str | None = Field(None, description="With `url`: where the upstream fetches it.")


class AnthropicImageBlock(View):
    type: Literal["image"]
    source: AnthropicImageSource


class AnthropicToolUseBlock(View):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class AnthropicToolResultBlock(View):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[AnthropicTextBlock | AnthropicImageBlock] | None = None
    is_error: bool | None = None


class AnthropicUserMessage(View):
    role: Literal["user"]
    content: str | list[AnthropicTextBlock | AnthropicImageBlock | AnthropicToolResultBlock]


class AnthropicAssistantMessage(View):
    role: Literal["assistant"]
    content: str | list[AnthropicTextBlock | AnthropicToolUseBlock]


class AnthropicTool(View):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class AnthropicToolChoice(View):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = Field(None, description="With `tool`: the tool to call.")


class AnthropicCountTokensRequest(View):
    """An Anthropic Messages request (see Anthropic's API reference); anygate translates it to chat completions
    for OpenAI-compatible upstreams (docs/agents.md says what is translated) and passes it through to
    providers with `api: anthropic`."""

    model: str = Field(min_length=1, description="`<provider>/<model>`, a model a provider lists, or an alias.")
    messages: list[AnthropicUserMessage | AnthropicAssistantMessage] = Field(min_length=1)
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None


class AnthropicMessagesRequest(AnthropicCountTokensRequest):
    max_tokens: int = Field(ge=1)
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None


class AnthropicUsage(View):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicMessage(View):
    """An Anthropic message (or, when the request asked to stream, its server-sent events)."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: AnthropicUsage


class AnthropicTokenCount(View):
    """The prompt's tokens as anygate's accounting estimates them."""

    input_tokens: int


class AnthropicModelInfo(View):
    type: Literal["model"]
    id: str
    display_name: str
    created_at: str


class AnthropicModelList(View):
    """The model list in Anthropic's shape (asked with `anthropic-version`); aliases the key may use first."""

    data: list[AnthropicModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None


# ------------------------------------------------------------------------------ console sign-in


class SignInInfo(View):
    """Whether sign-in with an OpenID issuer is on, and the issuer's name for the console's button."""

    enabled: bool
    issuer: str | None
    display_name: str | None
    login_url: str | None


class SessionView(View):
    """The console session this browser holds (`signed_in: false` without one); never a key."""

    signed_in: bool
    role: Literal["admin", "user"] | None = None
    name: str | None = None
    user_id: str | None = None
    csrf_token: str | None = Field(None, description="Sent back in `x-csrf-token` on every state-changing call")
    expires_at: int | None = Field(None, description="UNIX time")
