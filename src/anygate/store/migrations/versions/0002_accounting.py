"""Accounting: the usage ledger and the SQL limiter's counters (``anygate.store.ledger_tables``).

Revision ID: 0002_accounting
Revises: 0001_initial

Tables that accounting's own ``create_tables`` already made (before this migration existed) are kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_accounting"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _exists(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if not _exists("usage_ledger"):
        op.create_table(
            "usage_ledger",
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("user_id", sa.String(64), nullable=True),
            sa.Column("route", sa.String(32), nullable=False),
            sa.Column("provider_id", sa.String(64), nullable=True),
            sa.Column("model", sa.String(256), nullable=True),
            sa.Column("input_tokens", sa.Integer(), nullable=False),
            sa.Column("output_tokens", sa.Integer(), nullable=False),
            sa.Column("estimated", sa.Boolean(), nullable=False),
            sa.Column("cost_usd", sa.Float(), nullable=True),
            sa.Column("byok", sa.Boolean(), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=False),
            sa.Column("ttft_ms", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("request_id"),
        )
        op.create_index("ix_usage_ledger_key_time", "usage_ledger", ["key_id", "created_at"])
        op.create_index("ix_usage_ledger_user_time", "usage_ledger", ["user_id", "created_at"])
        op.create_index("ix_usage_ledger_time", "usage_ledger", ["created_at"])
    if not _exists("limiter_counters"):
        op.create_table(
            "limiter_counters",
            sa.Column("bucket", sa.String(256), nullable=False),
            sa.Column("counter", sa.String(32), nullable=False),
            sa.Column("used", sa.Float(), nullable=False),
            sa.Column("reserved", sa.Float(), nullable=False),
            sa.Column("granted", sa.Float(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("bucket", "counter"),
        )
    if not _exists("limiter_reservations"):
        op.create_table(
            "limiter_reservations",
            sa.Column("token", sa.String(32), nullable=False),
            sa.Column("counter", sa.String(32), nullable=False),
            sa.Column("bucket", sa.String(256), nullable=False),
            sa.Column("amount", sa.Float(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("token", "counter"),
        )
        op.create_index("ix_limiter_reservations_bucket_expiry", "limiter_reservations", ["bucket", "expires_at"])


def downgrade() -> None:
    for table in ("limiter_reservations", "limiter_counters", "usage_ledger"):
        op.drop_table(table)
