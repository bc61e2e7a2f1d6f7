"""The store's tables (SQLAlchemy Core). Migrations in ``store/migrations`` build exactly this schema.

store_revision     one row; bumped by every write so every worker knows when to reload its caches
users              people or groups that own keys (budgets and limits stored as JSON), each in at most one team
teams              cohorts (a course, a department): budgets, limits and allowlists that bind every member
api_keys           keys issued by anygate: SHA-256 hash only (and the previous secret's, for an hour after a
                   rotation), role, allowlists, expiry, budget, limits
providers          providers added at runtime: the provider object as JSON without its secrets; its key, and
                   its headers and extra keys, encrypted
provider_probes    what the last live probe of a provider found (any provider, file ones too)
credentials        callers' own provider keys (bring your own key), encrypted
signin_identities  people signed in through OpenID Connect: (issuer, subject) -> the user record they act as
signin_flows       sign-ins that came back: the state's hash and the code's (each used once), until the
                   sign-in would have expired anyway
audit_log          every management change: who, when, what, before and after (secrets masked); append-only
alert_crossings    one row per budget threshold crossed per window: whoever inserts it sends the alert
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

store_revision = Table(
    "store_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("budget", JSON, nullable=True),
    Column("limits", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    # No foreign key: SQLite cannot add one to an existing table; deleting a team clears it (``teams``).
    Column("team_id", String(64), nullable=True, index=True),
    Column("alerts", JSON, nullable=True),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("budgets", JSON, nullable=True),
    Column("limits", JSON, nullable=True),
    Column("models", JSON, nullable=True),
    Column("providers", JSON, nullable=True),
    Column("alerts", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor_id", String(64), nullable=False, index=True),
    Column("actor_label", String(200), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(128), nullable=True, index=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

alert_crossings = Table(
    "alert_crossings",
    metadata,
    # scope:id:window-id:unit:threshold, e.g. team:comp318:daily:2026-12-03:usd:0.8
    Column("crossing", String(400), primary_key=True),
    Column("claimed_at", UtcDateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(16), nullable=False),
    Column("alias", String(200), nullable=False),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("role", String(16), nullable=False),
    Column("models", JSON, nullable=True),
    Column("providers", JSON, nullable=True),
    Column("budget", JSON, nullable=True),
    Column("limits", JSON, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("alerts", JSON, nullable=True),
    # After POST /auth/rotate: the previous secret's hash, accepted until previous_valid_until.
    Column("previous_hash", String(64), nullable=True),
    Column("previous_valid_until", UtcDateTime, nullable=True),
)

providers = Table(
    "providers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("config", JSON, nullable=False),
    Column("api_key", Text, nullable=True),  # ciphertext
    Column("secrets", Text, nullable=True),  # ciphertext of {"headers": {...}, "api_keys": [...]}
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

provider_probes = Table(
    "provider_probes",
    metadata,
    Column("provider_id", String(64), primary_key=True),
    Column("result", JSON, nullable=False),
    Column("checked_at", UtcDateTime, nullable=False),
)

credentials = Table(
    "credentials",
    metadata,
    Column("owner_id", String(64), primary_key=True),
    Column("provider_id", String(64), primary_key=True),
    Column("secret", Text, nullable=False),  # ciphertext of the JSON section, e.g. {"apiKey": "..."}
    Column("updated_at", UtcDateTime, nullable=False),
)

signin_identities = Table(
    "signin_identities",
    metadata,
    Column("issuer", String(255), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

signin_flows = Table(
    "signin_flows",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("expires_at", UtcDateTime, nullable=False),
)


def all_tables() -> MetaData:
    """Every table the migrations make: the store's and accounting's, in one MetaData (for comparisons)."""
    from anygate.store.ledger_tables import metadata as accounting_metadata

    combined = MetaData()
    for source in (metadata, accounting_metadata):
        for table in source.tables.values():
            table.to_metadata(combined)
    return combined


def utcnow() -> datetime:
    return datetime.now(UTC)
