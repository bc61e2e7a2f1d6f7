"""Teams, several budgets per holder, alert crossings and the audit log.

Revision ID: 0007_teams_budgets_audit
Revises: 0006_signin

Several budgets need no column: ``users.budget`` and ``api_keys.budget`` (JSON) hold a list from now on,
and a stored object is read as a list of one. New: ``teams``, ``users.team_id``, ``usage_ledger.team_id``,
``alerts`` on keys and users, ``audit_log`` and ``alert_crossings``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_teams_budgets_audit"
down_revision = "0006_signin"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("budgets", sa.JSON(), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("providers", sa.JSON(), nullable=True),
        sa.Column("alerts", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )
    op.add_column("users", sa.Column("team_id", sa.String(64), nullable=True))
    op.add_column("users", sa.Column("alerts", sa.JSON(), nullable=True))
    op.create_index("ix_users_team_id", "users", ["team_id"])
    op.add_column("api_keys", sa.Column("alerts", sa.JSON(), nullable=True))
    if "team_id" not in _columns("usage_ledger"):  # accounting's own create_all may have made it
        op.add_column("usage_ledger", sa.Column("team_id", sa.String(64), nullable=True))
        op.create_index("ix_usage_ledger_team_time", "usage_ledger", ["team_id", "created_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("actor_label", sa.String(200), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(128), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor_id"])
    op.create_index("ix_audit_log_target_id", "audit_log", ["target_id"])
    op.create_table(
        "alert_crossings",
        sa.Column("crossing", sa.String(400), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("crossing", name="pk_alert_crossings"),
    )


def downgrade() -> None:
    op.drop_table("alert_crossings")
    op.drop_index("ix_audit_log_target_id", "audit_log")
    op.drop_index("ix_audit_log_actor_id", "audit_log")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_usage_ledger_team_time", "usage_ledger")
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("team_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("alerts")
    op.drop_index("ix_users_team_id", "users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("alerts")
        batch.drop_column("team_id")
    op.drop_table("teams")
