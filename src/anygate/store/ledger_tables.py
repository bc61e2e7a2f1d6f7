"""The usage ledger's and the limiters' tables (SQLAlchemy Core), owned by the store with its other tables.

usage_ledger          one row per request that reached (or was refused before) an upstream
limiter_counters      per bucket and counter: used, reserved (the SQL limiter; multi-worker without Redis)
limiter_reservations  open reservations, reclaimed when they expire
quota_polls           per provider: who last claimed the upstream quota poll, and what it found
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, text

metadata = MetaData()


def partial(condition: str) -> dict[str, Any]:
    """An index's options holding only the rows ``condition`` admits, on SQLite and PostgreSQL alike."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


usage_ledger = Table(
    "usage_ledger",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),  # UNIX time, UTC
    Column("key_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("route", String(32), nullable=False),
    Column("provider_id", String(64), nullable=True),
    Column("model", String(256), nullable=True),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("cost_usd", Float, nullable=True),  # NULL: the price is unknown, not zero
    Column("byok", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    # The token classes inside input_tokens (cache reads and writes, audio and image input) and
    # output_tokens (reasoning, audio and image output): priced at their own prices where known.
    Column("cached_input_tokens", Integer, nullable=False, server_default=text("0")),
    Column("cache_write_tokens", Integer, nullable=False, server_default=text("0")),
    Column("reasoning_tokens", Integer, nullable=False, server_default=text("0")),
    Column("audio_tokens", Integer, nullable=False, server_default=text("0")),
    Column("image_tokens", Integer, nullable=False, server_default=text("0")),
    Column("cost_source", String(16), nullable=True),  # upstream | configured | catalog; NULL: no price used
    Column("error", String(64), nullable=True),  # the failure's code, when the request failed
    Column("team_id", String(64), nullable=True),  # the key's user's team when the request was made
    Index("ix_usage_ledger_key_time", "key_id", "created_at"),
    # Only the rows with a team, and with a user: the queries look up a given one (migration 0008).
    Index("ix_usage_ledger_team_time", "team_id", "created_at", **partial("team_id IS NOT NULL")),
    Index("ix_usage_ledger_user_time", "user_id", "created_at", **partial("user_id IS NOT NULL")),
    Index("ix_usage_ledger_time", "created_at"),
)

limiter_counters = Table(
    "limiter_counters",
    metadata,
    Column("bucket", String(256), primary_key=True),
    Column("counter", String(32), primary_key=True),
    Column("used", Float, nullable=False, default=0.0),
    Column("reserved", Float, nullable=False, default=0.0),
    Column("granted", Float, nullable=False, default=0.0),  # the amount the last reserve admitted
    Column("expires_at", Float, nullable=True),
)

limiter_reservations = Table(
    "limiter_reservations",
    metadata,
    Column("token", String(32), primary_key=True),
    Column("counter", String(32), primary_key=True),
    Column("bucket", String(256), nullable=False),
    Column("amount", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_limiter_reservations_bucket_expiry", "bucket", "expires_at"),
)

quota_polls = Table(
    "quota_polls",
    metadata,
    Column("provider_id", String(64), primary_key=True),
    Column("claimed_at", Float, nullable=False),  # UNIX time of the last claim: one poll a minute in all
    Column("checked_at", Float, nullable=True),  # when the result below was found
    Column("result", JSON, nullable=True),  # the provider's quota as /v1/providers shows it
)
