"""Upstream quota polls shared by every worker and replica (``anygate.store.ledger_tables.quota_polls``).

Revision ID: 0004_quota_polls
Revises: 0003_rotation_secrets

A table that accounting's own ``create_all`` made already (an older deployment) is kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_quota_polls"
down_revision = "0003_rotation_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("quota_polls"):
        return
    op.create_table(
        "quota_polls",
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("checked_at", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("provider_id"),
    )


def downgrade() -> None:
    op.drop_table("quota_polls")
