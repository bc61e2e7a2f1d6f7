"""Request bodies of the management routes: the key and user ones validated here (a bad field is a 400
naming it); the credential and provider ones only documented here (their routes validate them by hand,
where absent, ``null`` and ``"***"`` each mean something).

Types are strict: a number is a JSON number (not ``true``, not ``"5"``), a whole number has no fraction
(``5.0`` is 5, as JSON Schema has it; ``5.5`` is refused),
a list is a list (not a string), a time is an ISO 8601 string, and an unknown field is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic import Strict as StrictType

from anygate.accounting.periods import is_period
from anygate.errors import InvalidRequest
from anygate.settings import whole_number

Pattern = Annotated[str, Field(min_length=1, max_length=200)]
PositiveWhole = Annotated[int, Field(gt=0), BeforeValidator(whole_number)]


def iso_text(value: Any) -> Any:
    """A time given as text only: a number would be read as seconds since 1970, a likely mistake."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("Input should be an ISO 8601 date and time, such as 2027-01-01T00:00:00Z")


# Strict types take no text for a time; an ISO 8601 text is what JSON has for one.
IsoTime = Annotated[datetime, StrictType(False), BeforeValidator(iso_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def never_null(schema: dict[str, Any]) -> None:
    """The JSON schema of a field that may be left out but not sent as ``null``."""
    schema.pop("default", None)
    options = schema.pop("anyOf", None)
    if options:
        schema.update(next(option for option in options if option.get("type") != "null"))


def refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null")
    return value


class BudgetIn(Strict):
    tokens: Annotated[int, Field(ge=0), BeforeValidator(whole_number)] | None = None
    usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    period: Literal["daily", "weekly", "monthly", "none"] = "none"
    mode: Literal["hard", "soft"] = "hard"

    @field_validator("period")
    @classmethod
    def _period_needs_a_limit(cls, value: str, info: ValidationInfo) -> str:
        # A period resets amounts: without one, the budget would look set and limit nothing.
        if value != "none" and info.data.get("tokens") is None and info.data.get("usd") is None:
            raise ValueError(f"a {value} budget needs a limit: give tokens or usd")
        return value


def window_text(value: Any) -> Any:
    if isinstance(value, str) and not is_period(value):
        raise ValueError(
            "Input should be 'daily', 'weekly', 'monthly', 'none' or '<N>h' (N from 1 to 8784), such as '5h'"
        )
    return value


Window = Annotated[
    str,
    BeforeValidator(window_text),
    Field(json_schema_extra={"pattern": "^(daily|weekly|monthly|none|[1-9][0-9]{0,3}h)$"}),
]
MAX_BUDGETS = 8


class BudgetItemIn(Strict):
    """One of a holder's budgets: tokens and/or USD and/or requests over one window; ``none`` never resets,
    ``<N>h`` is a window of N hours (``accounting.periods``)."""

    tokens: Annotated[int, Field(ge=0), BeforeValidator(whole_number)] | None = None
    usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    requests: Annotated[int, Field(ge=0), BeforeValidator(whole_number)] | None = None
    window: Window = "none"
    mode: Literal["hard", "soft"] = "hard"

    @model_validator(mode="after")
    def _limits_something(self) -> BudgetItemIn:
        if self.tokens is None and self.usd is None and self.requests is None:
            raise ValueError("a budget needs a limit: give tokens, usd or requests")
        return self


class BudgetsField(Strict):
    """``budgets`` (a list) or ``budget`` (one, the shape from before lists): never both; one per window."""

    budget: BudgetIn | None = None
    budgets: list[BudgetItemIn] | None = Field(None, max_length=MAX_BUDGETS)

    @field_validator("budgets")
    @classmethod
    def _one_window_each(cls, value: list[BudgetItemIn] | None) -> list[BudgetItemIn] | None:
        return one_per_window(value)


def one_per_window(value: list[BudgetItemIn] | None) -> list[BudgetItemIn] | None:
    windows = [b.window for b in value or []]
    repeated = next((w for w in windows if windows.count(w) > 1), None)
    if repeated is not None:
        raise ValueError(f"two budgets with window '{repeated}': put its tokens, usd and requests in one")
    return value


def budget_list(body: BaseModel) -> list[dict[str, Any]] | None:
    """The budgets a body gives, in the stored shape (``store.budget_lists``); None: none."""
    budgets = getattr(body, "budgets", None)
    if budgets is not None:
        return [b.model_dump() for b in budgets] or None
    budget = getattr(body, "budget", None)
    if budget is None or (budget.tokens is None and budget.usd is None):
        return None
    return [
        {"tokens": budget.tokens, "usd": budget.usd, "requests": None, "window": budget.period, "mode": budget.mode}
    ]


def with_budget_list(body: BaseModel, fields: dict[str, Any], column: str = "budget") -> dict[str, Any]:
    """``fields`` with ``budget``/``budgets`` replaced by the stored list under ``column``, when either was
    given (400 when both are)."""
    given = {"budget", "budgets"} & body.model_fields_set
    if len(given) == 2:
        raise InvalidRequest(
            "budgets: give budgets (a list) or budget (one), not both", param="budgets", code="invalid_field"
        )
    out = {name: value for name, value in fields.items() if name not in ("budget", "budgets")}
    if given:
        out[column] = budget_list(body)
    return out


class AlertsIn(Strict):
    """Where budget alerts go: one JSON POST per threshold crossed per window. (``url`` last: a missing
    url is reported after a wrong type in the fields given.)"""

    headers: dict[str, str] = Field(default_factory=dict)
    thresholds: list[Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.8, 1.0], min_length=1, max_length=10
    )
    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")


class LimitsIn(Strict):
    rpm: PositiveWhole | None = None
    tpm: PositiveWhole | None = None
    concurrency: PositiveWhole | None = None


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class KeyFields(BudgetsField):
    user_id: str | None = None
    role: Literal["admin", "team_admin", "user"] = "user"
    models: list[Pattern] | None = None
    providers: list[Pattern] | None = None
    expires_at: IsoTime | None = None
    limits: LimitsIn | None = None
    alerts: AlertsIn | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


class KeyCreate(KeyFields):
    """``POST /v1/keys``: every field but ``alias`` is optional. A new key's expiry is in the future (a key
    that would never work is a mistake); a change may move it to the past, which expires the key at once."""

    alias: str = Field(min_length=1, max_length=200)

    _in_the_future = field_validator("expires_at")(lambda value: new_expiry(value))


def new_expiry(value: datetime | None) -> datetime | None:
    """A new key's expiry: in UTC, and in the future."""
    value = as_utc(value)
    if value is not None and value <= datetime.now(UTC):
        raise ValueError(f"{value.isoformat().replace('+00:00', 'Z')} is in the past: a new key must expire later")
    return value


class KeyUpdate(KeyFields):
    """``PATCH /v1/keys/{id}``: only the fields given change."""

    alias: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=never_null)

    _alias_not_null = field_validator("alias")(refuse_null)


class UserCreate(BudgetsField):
    name: str = Field(min_length=1, max_length=200)
    limits: LimitsIn | None = None
    team_id: str | None = Field(None, min_length=1, max_length=64)
    alerts: AlertsIn | None = None


class UserUpdate(BudgetsField):
    name: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=never_null)
    limits: LimitsIn | None = None
    team_id: str | None = Field(None, min_length=1, max_length=64)
    alerts: AlertsIn | None = None

    _name_not_null = field_validator("name")(refuse_null)


TeamId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class TeamFields(BudgetsField):
    limits: LimitsIn | None = None
    models: list[Pattern] | None = None
    providers: list[Pattern] | None = None
    alerts: AlertsIn | None = None


class TeamCreate(TeamFields):
    """``POST /v1/teams``: ``id`` (a slug such as ``comp318``; made up when left out) and ``name``."""

    id: TeamId | None = None
    name: str = Field(min_length=1, max_length=200)


class TeamUpdate(TeamFields):
    name: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=never_null)

    _name_not_null = field_validator("name")(refuse_null)


class RosterUser(Strict):
    name: str = Field(min_length=1, max_length=200)


class RosterKey(Strict):
    """What each new key gets: an expiry, allowlists, and budgets and limits of its own."""

    expires_at: IsoTime | None = None
    models: list[Pattern] | None = None
    providers: list[Pattern] | None = None
    budgets: list[BudgetItemIn] | None = Field(None, max_length=MAX_BUDGETS)
    limits: LimitsIn | None = None

    _one_window_each = field_validator("budgets")(one_per_window)
    _in_the_future = field_validator("expires_at")(lambda value: new_expiry(value))


class RosterImport(Strict):
    """``POST /v1/teams/{id}/roster``: a user per name not yet in the team (with ``budgets`` and ``limits``,
    the per-student ones) and a key for each; names already in the team are kept."""

    users: list[RosterUser] = Field(min_length=1, max_length=10_000)
    budgets: list[BudgetItemIn] | None = Field(None, max_length=MAX_BUDGETS)
    limits: LimitsIn | None = None
    key: RosterKey = Field(default_factory=RosterKey)

    _one_window_each = field_validator("budgets")(one_per_window)


class AdminUserCreate(Strict):
    """``POST /admin/users``: a user and its first key in one call."""

    name: str = Field("user", min_length=1, max_length=200)


class CredentialSection(Strict):
    """One provider's section: ``apiKey`` sets the caller's key for it; ``null`` deletes it."""

    apiKey: str | None = Field(None, description="The caller's own key for the provider; null deletes it.")


class CredentialsUpdate(Strict):
    """``PUT /auth/creds``: merged into the caller's own keys; ``null`` deletes, absent keeps."""

    providers: dict[str, CredentialSection | None] | None = Field(
        None, description="Provider id -> its section (null deletes the section; null here deletes every section)."
    )


class ProbeRequest(Strict):
    """``POST /v1/providers/{id}/test``: the model to try (default: the first the provider lists)."""

    model: str | None = Field(None, min_length=1)
