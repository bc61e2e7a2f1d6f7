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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import Strict as StrictType

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


class LimitsIn(Strict):
    rpm: PositiveWhole | None = None
    tpm: PositiveWhole | None = None
    concurrency: PositiveWhole | None = None


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class KeyFields(Strict):
    user_id: str | None = None
    role: Literal["admin", "user"] = "user"
    models: list[Pattern] | None = None
    providers: list[Pattern] | None = None
    expires_at: IsoTime | None = None
    budget: BudgetIn | None = None
    limits: LimitsIn | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


class KeyCreate(KeyFields):
    """``POST /v1/keys``: every field but ``alias`` is optional. A new key's expiry is in the future (a key
    that would never work is a mistake); a change may move it to the past, which expires the key at once."""

    alias: str = Field(min_length=1, max_length=200)

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        value = as_utc(value)
        if value is not None and value <= datetime.now(UTC):
            raise ValueError(f"{value.isoformat().replace('+00:00', 'Z')} is in the past: a new key must expire later")
        return value


class KeyUpdate(KeyFields):
    """``PATCH /v1/keys/{id}``: only the fields given change."""

    alias: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=never_null)

    _alias_not_null = field_validator("alias")(refuse_null)


class UserCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    budget: BudgetIn | None = None
    limits: LimitsIn | None = None


class UserUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200, json_schema_extra=never_null)
    budget: BudgetIn | None = None
    limits: LimitsIn | None = None

    _name_not_null = field_validator("name")(refuse_null)


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
